"""Document functions of the local lmms-eval tasks (referenced from their YAML with ``!function``).

lmms-eval imports ``!function vislaw.eval.task_utils.<name>`` by module path, so the generated
task folders hold no Python of their own. Each function takes the document (one line of the
task's JSONL) and lmms-eval's ``lmms_eval_specific_kwargs`` from the YAML, where the generator
stores ``image_root`` (the benchmark set's folder; document image paths are relative to it) and
the prompt wording. Kept light: PIL only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from vislaw.data.images import read_rgb


def _kwargs(kwargs: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return kwargs or {}


def doc_to_visual(doc: Mapping[str, Any], lmms_eval_specific_kwargs=None) -> list[Image.Image]:
    """The document's image, read from ``image_root`` (a list: lmms-eval's visual convention)."""
    root = _kwargs(lmms_eval_specific_kwargs).get("image_root", "")
    path = Path(root) / doc["image"]
    if not path.is_file():
        raise FileNotFoundError(f"question {doc.get('question_id')}: image {path} not found")
    # decoded and checked as check_data checks images (vislaw.data.images)
    return [read_rgb(path, str(doc.get("question_id")))]


def doc_to_text(doc: Mapping[str, Any], lmms_eval_specific_kwargs=None) -> str:
    """The question, optionally followed by the options (``options_in_prompt``) and a post
    prompt. The model plugin wraps this in the conversation template and adds the image."""
    kwargs = _kwargs(lmms_eval_specific_kwargs)
    text = kwargs.get("pre_prompt", "") + doc["question"]
    if kwargs.get("options_in_prompt", False):
        text += "\nOptions: " + ", ".join(doc["options"]) + "."
    return text + kwargs.get("post_prompt", "")


def doc_to_choice(doc: Mapping[str, Any]) -> list[str]:
    """The answer options, scored by the model's likelihood of each as the answer."""
    return list(doc["options"])


def doc_to_target(doc: Mapping[str, Any]) -> int:
    """Index of the correct option (the generator stores the answer as option text)."""
    return list(doc["options"]).index(doc["answer"])

"""LLaVA-format data: the 558K caption JSON (stage 1) and the 665K conversation JSON (stage 2).

Both are a JSON list of ``{"id", "image"?, "conversations": [{"from": "human"|"gpt",
"value"}]}`` with image paths relative to an image folder; a sample without ``image`` is
text-only. :class:`LlavaDataset` tokenizes with a conversation template (vislaw.vlm.chat_templates)
and preprocesses with the encoder's own transform; :class:`LlavaCollator` pads a batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from vislaw.data.images import DataError, ImageError, image_path, read_rgb
from vislaw.vlm.chat_templates import (
    IGNORE_INDEX,
    IMAGE_PLACEHOLDER,
    IMAGE_TOKEN_INDEX,
    Template,
    Turn,
    tokenize_conversation,
)
from vislaw.vlm.model import Pixels, map_pixels, stack_pixels

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class LlavaSample:
    id: str
    image: str | None
    turns: tuple[Turn, ...]


def _turns(convs: Any, where: str, sample_id: str, has_image: bool) -> list[Turn]:
    """Well-formed conversations: human first, human/gpt alternating, string values, and
    exactly one ``<image>`` (in a human turn) when the sample has an image, none otherwise."""
    if not isinstance(convs, list) or not convs:
        raise ValueError(f"{where} (id {sample_id}): 'conversations' must be a non-empty list")
    turns = []
    for j, turn in enumerate(convs):
        if not isinstance(turn, dict) or turn.get("from") not in ("human", "gpt"):
            raise ValueError(f"{where} (id {sample_id}): turn {j} needs 'from': human|gpt")
        if not isinstance(turn.get("value"), str):
            raise ValueError(f"{where} (id {sample_id}): turn {j} needs a string 'value'")
        expected = "human" if j % 2 == 0 else "gpt"
        if turn["from"] != expected:
            raise ValueError(
                f"{where} (id {sample_id}): turn {j} is from {turn['from']!r}, expected "
                f"{expected!r} (turns alternate, human first)"
            )
        turns.append(Turn(turn["from"], turn["value"]))
    placeholders = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns)
    gpt_placeholders = sum(t.text.count(IMAGE_PLACEHOLDER) for t in turns[1::2])
    if (placeholders != 1 or gpt_placeholders) if has_image else placeholders:
        want = "one in a human turn" if has_image else "none (no 'image')"
        raise ValueError(
            f"{where} (id {sample_id}): {placeholders} {IMAGE_PLACEHOLDER} placeholder(s), "
            f"expected {want}"
        )
    return turns


def _sample(record: Any, where: str) -> LlavaSample:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    sample_id = str(record.get("id", where))
    image = record.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise ValueError(f"{where} (id {sample_id}): 'image' must be one relative path")
    turns = _turns(record.get("conversations"), where, sample_id, image is not None)
    return LlavaSample(sample_id, image, tuple(turns))


def load_records(path: str | Path) -> list[Any]:
    """The raw JSON list of a LLaVA file; a truncated file, bad bytes or a non-list raise an
    error naming the file (and where in it the parser stopped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LLaVA JSON not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:
            records = json.load(handle)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from err
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path}: not valid JSON at line {err.lineno} column {err.colno} ({err.msg}); "
            "a truncated download?"
        ) from err
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to parse (not a LLaVA file)") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON list of samples, got {type(records).__name__}")
    return records


def read_llava_json(path: str | Path) -> list[LlavaSample]:
    """Samples of a LLaVA JSON file; errors name the file and the sample."""
    return [_sample(r, f"{path}[{i}]") for i, r in enumerate(load_records(path))]


def conversation_texts(samples: Iterable[LlavaSample]) -> Iterator[str]:
    """Every message's text without the image placeholder (a tokenizer-training corpus)."""
    for sample in samples:
        for turn in sample.turns:
            text = turn.text.replace(IMAGE_PLACEHOLDER, "").strip()
            if text:
                yield text


def load_image(path: str | Path, sample_id: str, max_pixels: int | None = None) -> Image.Image:
    """An RGB image (16-bit greyscale scaled, not clipped: vislaw.data.images), decoded and
    checked as check_data checks it (vislaw.data.images.decode_image: empty, truncated,
    oversized, unsupported format); a missing or bad file raises an error naming it and the
    sample."""
    try:
        return read_rgb(path, max_pixels=max_pixels)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"sample {sample_id}: {err}") from err
    except ImageError as err:
        raise ImageError(err.kind, f"sample {sample_id}: {err}") from err


class LlavaDataset(Dataset):
    """Tokenized samples with preprocessed pixels.

    ``transform`` maps a list of PIL images to the encoder's pixels, (n, 3, S, S) or one such
    tensor per fusion member (vislaw.vlm.model.preprocess_images). ``image_tokens`` is the encoder's token count:
    sequences are cut so that text plus spliced image tokens fit ``max_length``.
    """

    def __init__(
        self,
        samples: Sequence[LlavaSample],
        image_folder: str | Path,
        tokenizer: PreTrainedTokenizerBase,
        template: Template,
        transform: Callable[[list[Image.Image]], Pixels],
        image_tokens: int,
        max_length: int,
        source: str | Path = "LLaVA JSON",
        max_pixels: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.source = source  # the JSON the samples come from, for error messages
        self.image_folder = Path(image_folder)
        self.tokenizer = tokenizer
        self.template = template
        self.transform = transform
        self.image_tokens = image_tokens
        self.max_length = max_length
        self.max_pixels = max_pixels  # data.max_image_pixels (None: Pillow's limit)

    def __len__(self) -> int:
        return len(self.samples)

    def modality_lengths(self) -> list[int]:
        """Word counts, negative for text-only samples (LLaVA's grouping key), without
        tokenizing or opening any image."""
        lengths = []
        for sample in self.samples:
            words = sum(len(t.text.split()) for t in sample.turns)
            lengths.append(words if sample.image else -words)
        return lengths

    def has_image(self, index: int) -> bool:
        return self.samples[index].image is not None

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        has_image = sample.image is not None
        try:
            ids, labels = tokenize_conversation(
                self.template, sample.turns, self.tokenizer, has_image
            )
        except ValueError as err:
            raise ValueError(f"sample {sample.id}: {err}") from err
        budget = self.max_length - (self.image_tokens - 1 if has_image else 0)
        if has_image and ids.index(IMAGE_TOKEN_INDEX) >= budget:
            raise ValueError(
                f"sample {sample.id}: max_length {self.max_length} cuts off the image "
                f"({self.image_tokens} tokens)"
            )
        item: dict[str, Any] = {
            "id": sample.id,
            "input_ids": torch.tensor(ids[:budget], dtype=torch.long),
            "labels": torch.tensor(labels[:budget], dtype=torch.long),
            "pixel_values": None,
        }
        if has_image:
            path = image_path(self.image_folder, sample.image, source=self.source, item=sample.id)
            image = load_image(path, sample.id, self.max_pixels)
            item["pixel_values"] = map_pixels(lambda p: p[0], self.transform([image]))
        return item


@dataclass
class LlavaCollator:
    """Right-pads ids (``pad_token_id``) and labels (-100); stacks pixels, with zeros for
    text-only samples and an ``image_mask`` saying which rows hold a real image."""

    pad_token_id: int

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        length = max(len(it["input_ids"]) for it in items)
        batch = len(items)
        ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((batch, length), dtype=torch.long)
        for b, item in enumerate(items):
            n = len(item["input_ids"])
            ids[b, :n] = item["input_ids"]
            labels[b, :n] = item["labels"]
            mask[b, :n] = 1
        out: dict[str, Any] = {
            "sample_ids": [it["id"] for it in items],
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "image_mask": torch.tensor([it["pixel_values"] is not None for it in items]),
        }
        pixels = stack_pixels([it["pixel_values"] for it in items])
        if pixels is not None:
            out["pixel_values"] = pixels
        return out

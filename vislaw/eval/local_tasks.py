"""Local lmms-eval task folders built from benchmark sets on disk (the demo's synthetic sets).

A benchmark set is a folder with ``questions.jsonl`` (one question per line: ``question_id``,
``image`` relative to the folder or to its ``images/``, ``question``, ``options``, ``answer``)
and its images
(vislaw.data.synthetic writes them). :func:`write_task_folder` turns one set into what
``lmms-eval --include_path`` loads with no code of ours beyond :mod:`vislaw.eval.task_utils`::

    <tasks_root>/<name>/<name>.yaml    the task: local JSON dataset, prompt, metric
    <tasks_root>/<name>/<name>.jsonl   the questions, checked, answer stored as option text

Prompt: the question plus LLaVA-1.5's short-answer instruction ("Answer the question using a
single word or phrase.", the prompt of its VQA evaluations and of the short-answer part of its
instruction mixture, which the demo's synthetic mixture imitates), so the benchmark asks in
the form stage 2 taught. The options are not listed by default (``options_in_prompt``).

Scoring. ``multiple_choice`` (the default) asks the model for the log-likelihood of every option
as the answer and takes the most likely (metric ``acc``); ``generate_until`` lets the model
write an answer and compares it with the correct option (``exact_match``). The demo uses
``multiple_choice``: a tiny model trained for minutes rarely *writes* the exact word, so
generation scores sit at zero for every encoder and carry no signal, while the ranking of a
handful of options still moves with how much the image tokens tell the model. Chance level is
1/len(options), so a score above it means the encoder's features reached the answer.

CLI: ``python -m vislaw.eval.local_tasks --set <folder> --name synth_color --out <tasks_root>``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vislaw.data.dialogue import SHORT_ANSWER_PROMPT
from vislaw.eval.task_folders import write_task_yaml
from vislaw.io.atomic import write_text_atomic

QUESTIONS_FILE = "questions.jsonl"
IMAGES_DIR = Path("images")
OUTPUT_TYPES = ("multiple_choice", "generate_until")
REQUIRED_FIELDS = ("question_id", "image", "question", "options", "answer")
_UTILS = "vislaw.eval.task_utils"
DEFAULT_POST_PROMPT = "\n" + SHORT_ANSWER_PROMPT


class BenchmarkSetError(ValueError):
    """A benchmark set that cannot become a task; the message names the file and line."""


def _answer_text(row: Mapping[str, Any], where: str) -> str:
    """The correct option's text: ``answer`` may be the text itself, a letter (A, B, ...) or an
    index into ``options``."""
    options, answer = list(row["options"]), row["answer"]
    if isinstance(answer, str) and answer in options:
        return answer
    if isinstance(answer, str) and len(answer) == 1 and answer.isalpha():
        index = ord(answer.upper()) - ord("A")
    elif isinstance(answer, int) and not isinstance(answer, bool):
        index = answer
    else:
        raise BenchmarkSetError(f"{where}: answer {answer!r} is not one of the options {options}")
    if not 0 <= index < len(options):
        raise BenchmarkSetError(f"{where}: answer {answer!r} is out of range for {options}")
    return options[index]


def _image_path(set_dir: Path, image: str, where: str) -> str:
    """The image's path relative to the set folder: ``image`` is taken relative to the folder
    itself or, as LLaVA's image folders are, to its ``images/`` subfolder."""
    for candidate in (Path(image), IMAGES_DIR / image):
        if (set_dir / candidate).is_file():
            return candidate.as_posix()
    raise BenchmarkSetError(f"{where}: image {image!r} not found in {set_dir} or {IMAGES_DIR}/")


def read_benchmark_set(set_dir: str | Path) -> list[dict[str, Any]]:
    """The questions of a set, checked (fields, options, answer, image files present)."""
    set_dir = Path(set_dir)
    path = set_dir / QUESTIONS_FILE
    if not path.is_file():
        raise BenchmarkSetError(f"{path} not found: {set_dir} is not a benchmark set")
    rows, seen = [], set()
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_no}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise BenchmarkSetError(f"{where}: not JSON ({err.msg})") from None
        missing = [f for f in REQUIRED_FIELDS if f not in row]
        if missing:
            raise BenchmarkSetError(f"{where}: missing field(s) {missing}")
        options = row["options"]
        if not isinstance(options, list) or len(options) < 2 or len(set(options)) != len(options):
            raise BenchmarkSetError(f"{where}: options must be 2+ distinct strings, got {options}")
        if row["question_id"] in seen:
            raise BenchmarkSetError(f"{where}: duplicate question_id {row['question_id']!r}")
        seen.add(row["question_id"])
        image = _image_path(set_dir, str(row["image"]), where)
        rows.append(
            {
                "question_id": row["question_id"],
                "image": image,
                "question": str(row["question"]),
                "options": [str(o) for o in options],
                "answer": _answer_text(row, where),
            }
        )
    if not rows:
        raise BenchmarkSetError(f"{path}: no questions")
    return rows


def _q(value: Any) -> str:
    """A YAML scalar (JSON strings are valid YAML and keep quotes and backslashes exact)."""
    return json.dumps(value)


def task_yaml(
    name: str,
    image_root: Path,
    cache_dir: Path,
    output_type: str = "multiple_choice",
    options_in_prompt: bool = False,
    post_prompt: str = "",
    max_new_tokens: int = 8,
) -> str:
    """The lmms-eval task config text for a folder holding ``<name>.jsonl``."""
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, not {output_type!r}")
    lines = [
        f"# lmms-eval task written by vislaw.eval.local_tasks from {image_root}",
        f"task: {_q(name)}",
        "dataset_path: json",
        "dataset_kwargs:",
        f"  data_files: {{test: {_q(name + '.jsonl')}}}",
        f"  cache_dir: {_q(str(cache_dir))}",
        "test_split: test",
        f"output_type: {output_type}",
        f"doc_to_visual: !function {_UTILS}.doc_to_visual",
        f"doc_to_text: !function {_UTILS}.doc_to_text",
        "lmms_eval_specific_kwargs:",
        "  default:",
        f"    image_root: {_q(str(image_root))}",
        f"    options_in_prompt: {_q(options_in_prompt)}",
        f"    post_prompt: {_q(post_prompt)}",
    ]
    if output_type == "multiple_choice":
        lines += [
            f"doc_to_choice: !function {_UTILS}.doc_to_choice",
            f"doc_to_target: !function {_UTILS}.doc_to_target",
            'target_delimiter: " "',
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
        ]
    else:
        lines += [
            "doc_to_target: answer",
            "generation_kwargs:",
            '  until: ["\\n", "</s>"]',
            f"  max_new_tokens: {int(max_new_tokens)}",
            "  temperature: 0",
            "  do_sample: false",
            "metric_list:",
            "  - metric: exact_match",
            "    aggregation: mean",
            "    higher_is_better: true",
            "    ignore_case: true",
            "    ignore_punctuation: true",
        ]
    lines += ["metadata:", "  version: 1.0"]
    return "\n".join(lines) + "\n"


def write_task_folder(
    set_dir: str | Path,
    tasks_root: str | Path,
    name: str,
    output_type: str = "multiple_choice",
    options_in_prompt: bool = False,
    post_prompt: str = DEFAULT_POST_PROMPT,
) -> Path:
    """Write ``<tasks_root>/<name>/{<name>.yaml, <name>.jsonl}`` from a benchmark set; returns
    the YAML path. The questions file is written first and the YAML last, so a folder with a
    YAML is complete."""
    set_dir = Path(set_dir).resolve()
    rows = read_benchmark_set(set_dir)
    folder = Path(tasks_root) / name
    text = "".join(json.dumps(row) + "\n" for row in rows)
    write_text_atomic(folder / f"{name}.jsonl", text)
    yaml_text = task_yaml(
        name,
        set_dir,
        (folder / ".hf_datasets").resolve(),
        output_type,
        options_in_prompt,
        post_prompt,
    )
    return write_task_yaml(tasks_root, name, yaml_text)


def run_eval_tasks(
    sets: Mapping[str, str | Path],
    tasks_root: str | Path,
    output_type: str = "multiple_choice",
    options_in_prompt: bool = False,
) -> list[Path]:
    """Step ``eval_tasks``: one task folder under ``tasks_root`` per ``{name: set folder}``;
    the YAML paths, in the order of ``sets``."""
    written = []
    for name, set_dir in sets.items():
        path = write_task_folder(set_dir, tasks_root, name, output_type, options_in_prompt)
        print(f"wrote {path}")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.local_tasks",
        description="Write an lmms-eval task folder (YAML + JSONL) from a local benchmark set.",
    )
    parser.add_argument("--set", required=True, help="benchmark set folder (questions.jsonl)")
    parser.add_argument("--name", required=True, help="task name (folder and file names too)")
    parser.add_argument("--out", required=True, help="folder that receives <name>/")
    parser.add_argument("--output-type", choices=OUTPUT_TYPES, default="multiple_choice")
    parser.add_argument("--options-in-prompt", action="store_true")
    args = parser.parse_args(argv)
    run_eval_tasks({args.name: args.set}, args.out, args.output_type, args.options_in_prompt)


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

"""The bridge to the stock lmms-eval: its command line, task index and model, built as its own
CLI would build them.

One place decides the ``lmms-eval`` arguments for our model (:func:`lmms_eval_argv`), whether
they are parsed in this process (:func:`cli_namespace`, so lmms-eval's own parser fills every
default) or handed to a launcher; the model is resolved by name through lmms-eval's registry,
i.e. our entry point (:func:`load_lmm`). Used by the evaluation loop (vislaw.eval.task_loop) and
the A-score image sampling (vislaw.scores.a_images, which needs lmms-eval's task index).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vislaw.eval.registration import MODEL_ID


def model_args_string(
    pretrained: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    max_new_tokens: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``--model_args`` for our plugin (what the results file records as the model)."""
    parts = {"pretrained": str(pretrained), "device": device, "dtype": dtype}
    if max_new_tokens:
        parts["max_new_tokens"] = str(int(max_new_tokens))
    parts.update({k: str(v) for k, v in (extra or {}).items()})
    for key, value in parts.items():
        if "," in value or "=" in value:
            raise ValueError(f"model argument {key}={value!r} may not hold ',' or '='")
    return ",".join(f"{k}={v}" for k, v in parts.items())


@contextlib.contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def lmms_eval_argv(
    model_args: str,
    tasks: Sequence[str],
    batch_size: int = 8,
    seed: int = 0,
    include_path: str | Path | None = None,
    limit: int | None = None,
) -> list[str]:
    """The ``lmms-eval`` command line (without the program name) for our model on ``tasks``:
    the one place that decides it, whether it is parsed in this process
    (:func:`cli_namespace`) or handed to a launcher."""
    argv = ["--model", MODEL_ID, "--model_args", model_args, "--batch_size", str(batch_size)]
    argv += ["--seed", str(seed), "--log_samples", "--tasks", ",".join(tasks)]
    if include_path is not None:
        argv += ["--include_path", str(include_path)]
    if limit:
        argv += ["--limit", str(int(limit))]
    return argv


def cli_namespace(argv: Sequence[str]) -> argparse.Namespace:
    """lmms-eval's CLI arguments for ``argv``, every default as its own parser sets it."""
    from lmms_eval.__main__ import parse_eval_args

    with _argv(["lmms-eval", *argv]):
        _, args = parse_eval_args()
    return args


def task_manager(
    tasks: Sequence[str], include_path: str | Path | None = None, verbosity: str = "INFO"
) -> Any:
    """lmms-eval's task index for ``tasks``, where a task folder under ``include_path`` wins
    over an installed task of the same name.

    lmms-eval itself lets the installed task win silently, so a copy pointed at another
    dataset (vislaw.eval.task_copies) would be ignored. When every task is under
    ``include_path`` the ~2,000 installed task files are not indexed at all (seconds saved).
    """
    from importlib.metadata import version

    import lmms_eval.tasks as installed
    from lmms_eval.tasks import TaskManager

    from vislaw.eval.task_index import installed_task_index

    class IncludeFirst(TaskManager):
        def initialize_tasks(self, include_path=None, include_defaults=True):  # noqa: ANN001
            index = {}
            if include_defaults:  # lmms-eval's ~2,000 task files, read once (task_index.py)
                index = installed_task_index(
                    Path(installed.__file__).resolve().parent,
                    version("lmms_eval"),
                    lambda: super(IncludeFirst, self).initialize_tasks(None, True),
                )
            if include_path is not None:
                index.update(super().initialize_tasks(include_path, include_defaults=False))
            return index

    path = str(include_path) if include_path is not None else None
    if path is not None:
        local = IncludeFirst(verbosity, path, include_defaults=False, model_name=MODEL_ID)
        if all(task in local.all_tasks for task in tasks):
            return local
    return IncludeFirst(verbosity, path, include_defaults=True, model_name=MODEL_ID)


def load_lmm(model_args: str, batch_size: int = 1):
    """Our model as lmms-eval builds it: resolved by name through its registry (entry point)."""
    from lmms_eval.models import get_model

    return get_model(MODEL_ID).create_from_arg_string(
        model_args, {"batch_size": batch_size, "device": None}
    )

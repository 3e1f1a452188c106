"""lmms-eval's own task definitions pointed at a dataset folder on disk.

A copy of an installed task is a task folder holding one YAML that *includes* the installed
task's YAML by absolute path and changes only where the dataset comes from::

    include: <site-packages>/lmms_eval/tasks/mme/mme.yaml
    task: mme
    dataset_path: /data/mme            # a DatasetDict written by save_to_disk
    dataset_kwargs: {load_from_disk: true}

lmms-eval resolves the included file's own ``include`` and ``!function`` references relative to
the installed folder, so prompts, ``process_results`` and aggregation stay the installed code;
when lmms-eval is upgraded, the copy follows. Loaded with ``--include_path`` the copy takes the
installed task's name and place. Uses: the test that runs the paper's benchmarks on tiny
datasets with the real columns (tests/unit/eval/test_eval_real_tasks.py), and a cluster whose
compute nodes read benchmark datasets saved to a shared disk rather than from the Hub cache.

CLI: ``python -m vislaw.eval.task_copies --task mme --dataset /data/mme --out tasks/``.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Sequence
from pathlib import Path

import yaml

from vislaw.eval.task_folders import write_task_yaml


@functools.cache
def _installed_index() -> dict:
    from lmms_eval.tasks import TaskManager

    return TaskManager(include_defaults=True).task_index  # indexing takes seconds: once


def installed_task_yaml(task: str) -> Path:
    """The YAML that defines ``task`` in the installed lmms-eval (its own task index)."""
    entry = _installed_index().get(task)
    if entry is None or entry.get("type") != "task":
        raise KeyError(f"lmms-eval has no task {task!r}")
    return Path(entry["yaml_path"]).absolute()


def write_task_copy(task: str, dataset_dir: str | Path, out_root: str | Path) -> Path:
    """``<out_root>/<task>/<task>.yaml``: the installed ``task`` reading ``dataset_dir``.

    ``dataset_dir`` is a ``datasets.DatasetDict`` saved with ``save_to_disk`` whose split names
    are the task's (``dev`` for MMBench, ``test`` for MME ...).
    """
    dataset_dir = Path(dataset_dir).resolve()
    if not (dataset_dir / "dataset_dict.json").is_file():
        raise FileNotFoundError(f"{dataset_dir}: not a DatasetDict saved with save_to_disk")
    config = {
        "include": str(installed_task_yaml(task)),
        "task": task,
        "dataset_path": str(dataset_dir),
        "dataset_kwargs": {"load_from_disk": True},
    }
    return write_task_yaml(out_root, task, yaml.safe_dump(config, sort_keys=False))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.task_copies",
        description="Write a task folder that runs an installed lmms-eval task on a saved dataset.",
    )
    parser.add_argument("--task", required=True, help="installed lmms-eval task name")
    parser.add_argument("--dataset", required=True, help="DatasetDict folder (save_to_disk)")
    parser.add_argument("--out", required=True, help="folder for --include_path")
    args = parser.parse_args(argv)
    print(write_task_copy(args.task, args.dataset, args.out))


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

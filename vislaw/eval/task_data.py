"""Which Hub dataset each lmms-eval task loads, read from the installed task YAMLs.

``prepare`` must cache exactly the datasets the offline evaluation will open; a hand list of
repo ids goes stale when lmms-eval moves its datasets (0.7.3 reads ``lmms-lab-encoder/MME``, not
``lmms-lab/MME``), and the mistake would show only after training. So the installed task
definition is the source: its YAML, with ``include``\\ d YAMLs merged the way lmms-eval merges
them (included first, the including file's keys win, paths relative to the including file) and
``!function`` tags ignored (they name Python code, not data).

A light module (PyYAML only; lmms-eval is located, never imported): the Snakefile reads it
while building the DAG, and importing lmms-eval's task index takes seconds.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# The dataset_kwargs lmms-eval passes on to datasets.load_dataset that change what is fetched;
# the others it consumes itself (video archives, local copies) and prepare cannot mirror yet.
LOAD_KWARGS = {"token", "revision", "data_files", "data_dir", "trust_remote_code"}
# datasets' generic builders: the files they read are named by data_files, not a Hub repo.
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "pandas", "arrow", "imagefolder"}
SPLIT_KEYS = ("test_split", "validation_split", "training_split", "fewshot_split")


@dataclass(frozen=True)
class TaskData:
    """What ``datasets.load_dataset`` receives when lmms-eval builds ``task``.

    ``token``: the task passes the user's Hub token (the dataset may be gated).
    ``unsupported``: dataset_kwargs prepare does not mirror (for example ``video`` archives);
    empty for the paper's eight benchmarks."""

    task: str
    yaml_path: Path
    dataset_path: str
    dataset_name: str | None
    revision: str | None
    splits: tuple[str, ...]
    token: bool
    unsupported: tuple[str, ...] = ()


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``!function module.name`` as its text."""


_Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def tasks_root() -> Path:
    """``<site-packages>/lmms_eval/tasks`` of the installed lmms-eval (found, not imported)."""
    spec = importlib.util.find_spec("lmms_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("lmms-eval is not installed (pip install -e '.[eval]')")
    return Path(next(iter(spec.submodule_search_locations))) / "tasks"


def read_task_yaml(path: str | Path) -> dict[str, Any]:
    """One task YAML with its ``include`` chain merged as lmms-eval's load_yaml_config does."""
    path = Path(path)
    with open(path, "rb") as fh:
        config = yaml.load(fh, Loader=_Loader) or {}
    includes = config.pop("include", None)
    if includes is None:
        return config
    merged: dict[str, Any] = {}
    for name in reversed([includes] if isinstance(includes, str) else list(includes)):
        included = Path(name) if Path(name).is_file() else path.parent / name
        merged.update(read_task_yaml(included))
    merged.update(config)
    return merged


@functools.cache
def task_yaml(task: str) -> Path:
    """The installed YAML whose ``task:`` is ``task`` (``<folder>/<task>.yaml`` first, as the
    installed tasks are named, then any YAML below the tasks folder)."""
    root = tasks_root()
    candidates = [*sorted(root.glob(f"*/{task}.yaml")), *sorted(root.rglob("*.yaml"))]
    for path in candidates:
        try:
            if read_task_yaml(path).get("task") == task:
                return path
        except (yaml.YAMLError, OSError):
            continue  # a group file or one the loader cannot read: not this task
    raise KeyError(f"lmms-eval ({root}) has no task {task!r}")


def task_data(task: str) -> TaskData:
    """The dataset the installed task ``task`` loads. Raises KeyError for an unknown task or
    one without a ``dataset_path``."""
    path = task_yaml(task)
    config = read_task_yaml(path)
    if not config.get("dataset_path"):
        raise KeyError(f"{path}: task {task!r} names no dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    splits = tuple(dict.fromkeys(config[k] for k in SPLIT_KEYS if config.get(k)))
    return TaskData(
        task=task,
        yaml_path=path,
        dataset_path=str(config["dataset_path"]),
        dataset_name=config.get("dataset_name"),
        revision=kwargs.get("revision"),
        splits=splits,
        token=bool(kwargs.get("token")),
        unsupported=tuple(sorted(set(kwargs) - LOAD_KWARGS))
        + (("dataset_path",) if config["dataset_path"] in LOCAL_BUILDERS else ()),
    )

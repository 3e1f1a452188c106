"""Checks of a config against the machine it starts on, which the schema cannot see.

A folder key that names a file (``cache.hf_home: ~/.bashrc``) and ``device: cuda`` on a
machine without CUDA both pass the schema and used to fail inside the first job, minutes
later, or, for a cluster run, after queueing. The workflow (rules/common.smk) and every
library entry point (vislaw.pipeline.load_checked_config) call these before any job starts,
and the error names the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vislaw.config import ConfigError

FOLDER_KEYS = ("results_dir", "data.root", "cache.hf_home")
"""Config keys naming a folder that jobs create or fill (relative ones are under the working
directory, as jobs resolve them)."""


def _value(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def check_folders(config: Mapping[str, Any]) -> None:
    """Each of FOLDER_KEYS, when set, is a folder or can become one: the path and the nearest
    of its parents that exists are folders, not files."""
    for key in FOLDER_KEYS:
        value = _value(config, key)
        if not isinstance(value, str) or not value:
            continue
        path = Path(value).expanduser()
        existing = next((p for p in (path, *path.parents) if p.exists()), None)
        if existing is not None and not existing.is_dir():
            what = "is a file" if existing == path else f"is under {existing}, a file"
            raise ConfigError(key, f"{value!r} must be a folder, but it {what}")


def pick_device(config: Mapping[str, Any]) -> str:
    """The config's ``device`` (the schema's default when the config is unchecked, as
    Snakemake hands it to scripts); ``auto`` is CUDA when this machine has it."""
    import torch

    from vislaw.sections import section_values

    wanted = section_values("device", config.get("device"))
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device({"device": wanted})  # cuda without a device: the key, not a CUDA traceback
    return wanted


def check_device(config: Mapping[str, Any]) -> None:
    """``device: cuda`` needs a CUDA device on this machine. Call it where jobs run (a local
    run, a job); a cluster's login node may have none while its GPU nodes do."""
    if config.get("device") != "cuda":
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "device",
            "cuda, but this machine has no usable CUDA device (torch.cuda.is_available() is "
            "False); use device: auto (CUDA when there is one) or cpu, or run on a GPU node",
        )

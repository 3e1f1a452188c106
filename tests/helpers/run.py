"""Configs isolated under a test's folder and Snakemake from this venv: what every test that
runs the workflow needs (it was in conftest.py, which no test module may import)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

from helpers.paths import BIN, ROOT

DELETE = object()
"""A value for :func:`with_key`: remove the key instead of setting it."""


def isolate(config: dict, folder: Path) -> dict:
    """``config`` with every output under ``folder``: results_dir, and data.root when it is
    relative (the demo writes its synthetic data under results/). Tests never read or touch
    what the user's own runs left in the checkout's results/ (issue 16, class 7)."""
    config = copy.deepcopy(config)
    config["results_dir"] = str(folder / "results")
    root = config.get("data", {}).get("root")
    if root and not Path(root).is_absolute():
        config["data"]["root"] = str(folder / root)
    return config


def with_key(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set to ``value`` (:data:`DELETE` removes
    the key); parents are created as needed. Keys that hold dots: separate them with '|'."""
    config = copy.deepcopy(config)
    node = config
    keys = path.split("|") if "|" in path else path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return config


def run_snakemake(
    *args: str, cwd: Path = ROOT, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Snakemake from this venv, with the venv first on PATH (sbatch --export=ALL hands that PATH
    to SLURM jobs, which is how they find this Python on a cluster without conda); ``env``
    adds variables, and removes those it maps to None (tests/conftest.py sets
    HF_HUB_OFFLINE=1: a run that must look like a user's shell without it says so)."""
    exe = BIN / "snakemake"
    merged = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(
        [str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={name: value for name, value in merged.items() if value is not None},
    )


def mark_prepared(config_path: Path, workdir: Path | None = None) -> None:
    """Write `prepare`'s markers (data sources, Hub repos) of a config, without which a real
    config refuses to plan; relative markers resolve in ``workdir`` (the run's --directory)."""
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare.sources import sources, write_stand_in
    from vislaw.prepare.status import all_requirements

    checked, specs = load_checked_config(config_path)
    for req in all_requirements(checked, specs):
        marker = (workdir / req.marker) if workdir else req.marker
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    for source in sources(checked).values():  # a data marker is trusted only when it verifies
        write_stand_in(source, workdir)

"""Run this venv's Snakemake in a subprocess, the way the end-to-end tests do.

The venv's bin folder goes first on PATH so that the jobs Snakemake starts (and their `python`)
are this venv's too. Import it as `from snakemake_runner import run_snakemake` (pytest puts
tests/ on sys.path, as for hub_twins and real_task_data).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake_exe() -> str:
    """The venv's snakemake, else the one on PATH."""
    exe = BIN / "snakemake"
    return str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")


def run_snakemake(*args: str, cwd: Path = ROOT, timeout: int = 900) -> subprocess.CompletedProcess:
    """``snakemake *args`` in ``cwd`` (the repository by default); output captured as text."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [snakemake_exe(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )

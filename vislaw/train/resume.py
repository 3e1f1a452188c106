"""Checkpoints of a running phase: save every ``save_steps``, resume from the latest one.

A checkpoint folder records the fingerprint of the setting it was written under
(vislaw.train.fingerprint); a restarted job resumes only its own setting's checkpoints and
starts over, discarding them, when the setting changed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from vislaw.train.engine import DistEnv, barrier

FINGERPRINT = "fingerprint"


def resume_step(root: Path, fingerprint: str, engine: Any, dist: DistEnv) -> int:
    """Load the latest checkpoint of this very run (same fingerprint) and return its step;
    checkpoints of a different setting are discarded so the run starts over."""
    latest = root / "latest"
    if not latest.is_file():
        return 0
    stored = (root / FINGERPRINT).read_text().strip() if (root / FINGERPRINT).is_file() else ""
    if stored != fingerprint:
        print(f"checkpoints in {root} belong to a different setting; starting from step 0")
        barrier()
        if dist.main:
            shutil.rmtree(root)
        barrier()
        return 0
    tag = latest.read_text().strip()
    if not (root / tag).is_dir():
        raise FileNotFoundError(f"{latest} names {tag}, which is missing; delete {root} to restart")
    client = engine.load(root, tag)
    step = int(client["step"])
    print(f"resumed from {root / tag} at step {step}")
    return step


def save_checkpoint(
    root: Path, step: int, fingerprint: str, engine: Any, dist: DistEnv, keep: int
) -> None:
    from vislaw.io.atomic import write_text_atomic

    if dist.main:
        root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / FINGERPRINT, fingerprint)
    barrier()
    engine.save(root, f"step-{step:08d}", {"step": step, "fingerprint": fingerprint})
    barrier()
    if dist.main:
        tags = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in tags[:-keep]:
            shutil.rmtree(old, ignore_errors=True)

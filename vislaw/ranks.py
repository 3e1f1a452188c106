"""One process per GPU for the jobs that split their items across ranks (features, embeddings).

Such a job needs no collectives: each rank encodes every ``world``-th item into its own part
file, and the job merges the parts in item order afterwards. This module holds the part naming
and the launch (one process per GPU, each seeing one of the job's GPUs; wait for all; name the
ranks that failed), so both jobs spell it once.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


def rank_part(path: str | Path, rank: int, world: int) -> Path:
    """Rank ``rank``'s part of ``path``: ``<stem>.rank<r>of<n><suffix>`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}of{world}{path.suffix}")


def run_on_gpus(commands: Sequence[Sequence[str]], what: str) -> None:
    """Run ``commands[rank]`` for every rank at once, rank r on GPU r of the job's
    ``CUDA_VISIBLE_DEVICES`` (0..n-1 when unset), wait for all, and raise RuntimeError naming
    the ranks that failed (``what`` names the job)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    world = len(commands)
    devices = visible.split(",") if visible else [str(i) for i in range(world)]
    procs = []
    for rank, command in enumerate(commands):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices[rank % len(devices)]}
        procs.append(subprocess.Popen(list(command), env=env))
    codes = [proc.wait() for proc in procs]
    failed = [rank for rank, code in enumerate(codes) if code != 0]
    if failed:
        raise RuntimeError(f"{what}: rank(s) {failed} of {world} failed")

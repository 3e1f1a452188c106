"""How a Snakemake training job starts: in-process on the CPU, ``torchrun`` on GPUs.

With ``gpus`` > 0 (from the rule's resources) the checked config is written next to the
outputs and ``torchrun --standalone --nproc_per_node gpus -m vislaw.train ...`` runs one
process per GPU (DeepSpeed picks them up); its output goes to the job's log. Without GPUs the
stage runs in this process, which saves a second interpreter start (seconds per demo job).

Several nodes (``resources.<stage>.nodes`` > 1): the job's batch step runs on the first node
of its allocation, so it hosts the rendezvous; ``srun`` starts one torchrun agent per node and
the agents meet there (c10d rendezvous, ``--nnodes N``), each starting ``gpus`` ranks.
tests/test_multirank.py runs the same torchrun command as two "nodes" on localhost.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vislaw.config import write_run_config
from vislaw.io.ports import free_port

RUN_CONFIG = "run_config.yaml"


def torchrun_command(
    config_path: Path,
    stage: int,
    encoder: str,
    out_dir: Path,
    gpus: int,
    stage1_dir: str | Path | None = None,
    *,
    nodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "vislaw",
) -> list[str]:
    """torchrun for one node (standalone) or one of ``nodes`` agents meeting at
    ``rdzv_endpoint`` (host:port)."""
    if nodes > 1:
        if not rdzv_endpoint:
            raise ValueError("a multi-node launch needs a rendezvous endpoint (host:port)")
        rendezvous = [
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
        ]
    else:
        rendezvous = ["--standalone"]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc_per_node={gpus}",
        "-m",
        "vislaw.train",
        "--config",
        str(config_path),
        "--stage",
        str(stage),
        "--encoder",
        encoder,
        "--out",
        str(out_dir),
    ]
    if stage1_dir is not None:
        command += ["--stage1", str(stage1_dir)]
    return command


def srun_command(torchrun: list[str], nodes: int) -> list[str]:
    """One torchrun agent per node of the job's allocation. ``--overlap``: the job's own step
    (the Snakemake job) holds the allocation, the agents share it."""
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--overlap",
        "--kill-on-bad-exit=1",
        *torchrun,
    ]


def rendezvous_endpoint() -> str:
    """host:port on this (the allocation's first) node, where the agents meet."""
    import os
    import socket

    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return f"{host}:{free_port()}"


def run_train_stage(
    config: Mapping[str, Any],
    stage: int,
    encoder: str,
    out_dir: str | Path,
    *,
    stage1_dir: str | Path | None = None,
    gpus: int = 0,
    nodes: int = 1,
    llm: str | None = None,
    max_steps: int | None = None,
) -> Path:
    """Step ``stage1``/``stage2``: train one encoder's stage into ``out_dir``.

    ``config`` is the checked config (the stage reads its train, llm, data, encoders and device
    settings from it). Without GPUs the stage runs in this process (this is also what each
    torchrun rank does, via ``python -m vislaw.train``); with ``gpus`` > 0, torchrun starts
    ``gpus`` ranks per node on ``nodes`` nodes (srun-launched agents when more than one).
    ``llm``/``max_steps`` (CLI only) override the config's LLM and step count.
    """
    out_dir = Path(out_dir)
    if gpus <= 0:
        from vislaw.train.engine import close_distributed
        from vislaw.train.runner import train_stage

        train_stage(
            config, stage, encoder, out_dir, stage1_dir=stage1_dir, llm=llm, max_steps=max_steps
        )
        close_distributed()  # a torchrun rank leaves its process group last
        return out_dir
    if llm is not None or max_steps is not None:
        raise ValueError("llm/max_steps overrides are for in-process runs (gpus=0)")
    config_path = out_dir / RUN_CONFIG
    out_dir.mkdir(parents=True, exist_ok=True)
    write_run_config(config, config_path)
    command = torchrun_command(config_path, stage, encoder, out_dir, gpus, stage1_dir)
    if nodes > 1:
        import os

        torchrun = torchrun_command(
            config_path,
            stage,
            encoder,
            out_dir,
            gpus,
            stage1_dir,
            nodes=nodes,
            rdzv_endpoint=rendezvous_endpoint(),
            rdzv_id=os.environ.get("SLURM_JOB_ID", "vislaw"),
        )
        command = srun_command(torchrun, nodes)
    print(" ".join(command), flush=True)
    sys.stdout.flush()
    subprocess.run(command, check=True, stdout=sys.stdout, stderr=sys.stderr)
    return out_dir

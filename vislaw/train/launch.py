"""How a Snakemake training job starts: in-process on the CPU, ``torchrun`` on GPUs.

With ``gpus`` > 0 (from the rule's resources) torchrun (built by :mod:`vislaw.ranks`, the one
launcher) runs one process per GPU (DeepSpeed picks them up), each running the training CLI
``python -m vislaw.train`` on the run's checked config file (``ranks.run_config_file``) through
a saved call; its output goes to the job's log. Without GPUs the stage runs in this process,
which saves a second interpreter start (seconds per demo job).

Several nodes (``resources.<stage>.nodes`` > 1): the job's batch step runs on the first node
of its allocation, so it hosts the rendezvous; ``srun`` starts one torchrun agent per node and
the agents meet there (c10d rendezvous, ``--nnodes N``), each starting ``gpus`` ranks.
tests/unit/core/test_multirank.py runs the same torchrun command as two "nodes" on localhost.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

STAGE_TARGET = "vislaw.train.__main__:main"


def stage_call(
    config_path: str | Path,
    stage: int,
    encoder: str,
    out_dir: str | Path,
    stage1_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The keyword arguments of one torchrun rank's call of :data:`STAGE_TARGET` (the training
    CLI's argv), for :func:`vislaw.ranks.call_file`."""
    argv = ["--config", str(config_path), "--stage", str(stage), "--encoder", encoder]
    argv += ["--out", str(out_dir)]
    if stage1_dir is not None:
        argv += ["--stage1", str(stage1_dir)]
    return {"argv": argv}


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
    import os

    from vislaw.ranks import (
        call_file,
        rank_program,
        rendezvous_endpoint,
        run_config_file,
        run_launcher,
        srun_command,
        torchrun_command,
    )

    call = stage_call(run_config_file(config), stage, encoder, out_dir, stage1_dir)
    what = f"stage {stage} of {encoder} on {gpus} GPU(s) x {nodes} node(s)"
    with call_file(STAGE_TARGET, call, out_dir, what) as path:
        command = torchrun_command(rank_program(path), gpus)
        if nodes > 1:
            agent = torchrun_command(
                rank_program(path),
                gpus,
                nodes=nodes,
                rdzv_endpoint=rendezvous_endpoint(),
                rdzv_id=os.environ.get("SLURM_JOB_ID", "vislaw"),
            )
            command = srun_command(agent, nodes)
        run_launcher(command, what)
    return out_dir

"""CLI: ``python -m vislaw.train --config config.yaml --stage 1 --encoder clip336 --out DIR``.

Single process on the CPU or one GPU; for several GPUs launch it with
``torchrun --standalone --nproc_per_node N -m vislaw.train ...`` (the training rules do this).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.train",
        description="Train stage 1 (projector) or stage 2 (projector + LLM) for one encoder; "
        "an encoder's recipe (train.recipes, e.g. convllava) may run a stage as several phases.",
    )
    parser.add_argument("--config", required=True, help="workflow config (YAML or JSON)")
    parser.add_argument("--stage", type=int, choices=[1, 2], required=True)
    parser.add_argument("--encoder", required=True, help="encoder name in the config")
    parser.add_argument("--out", required=True, help="stage folder (resumes if it has checkpoints)")
    parser.add_argument("--stage1", help="stage 2: the stage-1 folder to start from")
    parser.add_argument("--llm", help="LLM id or folder (default: from the config)")
    parser.add_argument("--max-steps", type=int, help="override the configured number of steps")
    args = parser.parse_args(argv)
    if args.stage == 2 and not args.stage1:
        parser.error("--stage 2 needs --stage1 DIR")

    from vislaw.config import load_config
    from vislaw.jobs import apply_runtime_settings

    config = load_config(args.config)
    # torchrun sets OMP_NUM_THREADS per process; a plain run keeps torch's default.
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1
    apply_runtime_settings(config, threads=threads)
    from vislaw.train.launch import run_train_stage

    run_train_stage(
        config,
        args.stage,
        args.encoder,
        args.out,
        stage1_dir=args.stage1,
        llm=args.llm,
        max_steps=args.max_steps,
    )


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

"""``python -m vislaw evaluate`` (or ``python -m vislaw.eval.cli``): evaluate a stage folder on
benchmarks with the stock lmms-eval, outside the workflow.

``python -m vislaw evaluate --pretrained results/demo/stage2/clip224 --benchmark synth_color
--include-path results/demo/eval/tasks --out-dir /tmp/eval``. Options not given take the
schema's ``eval`` defaults (:meth:`vislaw.sections.Section.from_values`). Light on purpose:
``--help`` imports no torch; the step (vislaw.eval.launch) is imported when it runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vislaw.eval.settings import EvalSettings


def _cli_settings(args: argparse.Namespace) -> EvalSettings:
    """The ``eval`` settings of a CLI run: the schema's defaults (a config with no ``eval``
    section), replaced by the options given."""
    given = {"dtype": args.dtype, "batch_size": args.batch_size}
    given |= {"max_new_tokens": args.max_new_tokens, "limit": args.limit}
    return EvalSettings.from_values({k: v for k, v in given.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options, evaluate, print each benchmark's results file."""
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.cli",
        description="Evaluate a vislaw stage folder on benchmarks with lmms-eval.",
    )
    parser.add_argument("--pretrained", help="stage-2 folder (vlm.json)")
    parser.add_argument("--benchmark", action="append", help="repeatable")
    parser.add_argument("--include-path", help="folder of local task folders")
    parser.add_argument("--out-dir", help="receives <benchmark>.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--limit", type=int, help="questions per task (testing only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.pretrained or not args.benchmark or not args.out_dir:
        parser.error("--pretrained, --benchmark and --out-dir are required")
    from vislaw.eval.launch import run_evaluate
    from vislaw.eval.tasks import get_benchmark

    benchmarks = [get_benchmark(name) for name in args.benchmark]
    out = Path(args.out_dir)
    written = run_evaluate(
        _cli_settings(args),
        args.pretrained,
        benchmarks,
        {b.name: out / f"{b.name}.json" for b in benchmarks},
        include_path=args.include_path,
        device=args.device,
        seed=args.seed,
    )
    for name, path in written.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

"""``python -m vislaw <step> [options]``: the one front door to every step's command line.

Each step is the CLI a rule (or a user) already runs as ``python -m vislaw.<module>``; this
table names them, so ``python -m vislaw --help`` lists every step without importing any of
them (no torch: listing the steps takes a fraction of a second), and ``python -m vislaw <step>
...`` imports only that step's module and hands it the remaining arguments (``--help``
included). A bad config is one line and exit code 2, as for the step's own module
(``config.run_cli``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# step -> (module whose ``main(argv)`` it runs, what it does / which rules run it)
STEPS: dict[str, tuple[str, str]] = {
    "prepare": ("vislaw.prepare.__main__", "fetch and mark real data and models (prepare_*)"),
    "check_data": ("vislaw.data.check", "validate a dataset once (check_data)"),
    "synthetic_data": ("vislaw.data.synthetic", "seeded demo data (synthetic_data)"),
    "tiny_llm": ("vislaw.train.tiny_llm", "the demo's tiny LLM (tiny_llm)"),
    "features": ("vislaw.features.cli", "one encoder's features of the image set (features)"),
    "c_score": ("vislaw.scores.correspondence.cli", "C score: SPair keypoint PCK (c_score)"),
    "a_images": ("vislaw.scores.a_images", "the benchmark images the A score embeds (a_images)"),
    "train": ("vislaw.train.__main__", "train stage 1 or 2 of one encoder (stage1, stage2)"),
    "evaluate": ("vislaw.eval.cli", "lmms-eval benchmarks of a stage-2 model (evaluate)"),
    "eval_tasks": ("vislaw.eval.local_tasks", "lmms-eval task folder of a local set"),
    "task_copies": ("vislaw.eval.task_copies", "lmms-eval task pointed at a saved dataset"),
    "results": ("vislaw.eval.results", "score rows of lmms-eval results files"),
    "law": ("vislaw.law.cli", "fit the AC law, compare strategies, recommend (law rules)"),
    "answer": ("vislaw.law.answer", "the run's answer in a few lines"),
    "lmvr": ("vislaw.lmvr.cli", "LMVR: images, hidden-state features, probes (lmvr rules)"),
    "vlm": ("vislaw.vlm.__main__", "import a released LLaVA checkpoint as a stage folder"),
    "cost": ("vislaw.cost", "what a config costs: jobs, GPU hours, disk"),
    "plan": ("vislaw.plan", "the whole SLURM plan of a config"),
    "protocol_effects": ("vislaw.studies.protocol_effects", "how far the feature protocols differ"),
}


def usage() -> str:
    """The steps, one a line (what ``--help`` prints)."""
    width = max(len(step) for step in STEPS)
    lines = ["usage: python -m vislaw <step> [options]   (python -m vislaw <step> --help)", ""]
    lines += [f"  {step:<{width}}  {what}" for step, (_, what) in STEPS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``<step>``'s command line with the other arguments; the step list for ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    step, rest = argv[0], argv[1:]
    if step not in STEPS:
        print(f"python -m vislaw: unknown step {step!r}\n\n{usage()}", file=sys.stderr)
        return 2
    from vislaw.config import run_cli

    step_main = importlib.import_module(STEPS[step][0]).main
    return run_cli(lambda: step_main(rest))


if __name__ == "__main__":
    raise SystemExit(main())

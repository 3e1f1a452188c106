"""The run's answer in a few lines: the encoder to use, how far the law fits, where the report is.

``make demo`` ends with it, so a run says what it found instead of leaving the user to open
``policy/recommendation.md`` and ``law/fit_stats.csv``::

    python -m vislaw.law.answer --config config/demo.yaml
    python -m vislaw.law.answer --run results/demo

Everything is read from the files the run wrote (the policy's last round, the law's fit
statistics); nothing is refitted. A law fitted on fewer than its terms plus two encoders
interpolates its points, so its R² is no evidence: the answer says the fit is under-determined
and prints no R² (the same threshold as the figures' captions).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from vislaw.law.fit import LAW_MODEL, LAW_TERMS, MIN_DETERMINED, underdetermined
from vislaw.law.policy_mode.rounds import RoundDecision, policy_choice, read_round
from vislaw.layout import RunLayout


def run_layout(run_dir: str | Path) -> RunLayout:
    """The layout of a run folder (``<results_dir>/<run>``) without its config."""
    run_dir = Path(run_dir)
    return RunLayout(results_dir=str(run_dir.parent), run=run_dir.name, data_root="")


def last_round(layout: RunLayout) -> RoundDecision | None:
    """The policy's last round (its JSON), or None when the run has no policy."""
    rounds = sorted(Path(layout.policy_dir, "rounds").glob("*.json"), key=lambda p: int(p.stem))
    return read_round(rounds[-1]) if rounds else None


def recommendation_lines(layout: RunLayout) -> list[str]:
    """The policy's choice, or why there is none."""
    decision = last_round(layout)
    if decision is None:
        return ["Recommended encoder: none (the run has no policy; add `policy` to targets)."]
    choice = policy_choice(decision)
    if choice is None:
        return ["Recommended encoder: none (the policy measured no encoder)."]
    return [
        f"Recommended encoder: {choice} (policy `{decision.strategy}`, the best of "
        f"{len(decision.finetuned)} finetuned: {', '.join(decision.finetuned)}; "
        f"stopped: {decision.why}).",
        f"  {layout.policy_recommendation}",
    ]


def law_lines(layout: RunLayout) -> list[str]:
    """The law's in-sample and leave-one-out R² per benchmark and their mean, or, where it
    has fewer than its terms plus two encoders, that the fit is under-determined."""
    path = Path(layout.law_file("fit_stats.csv"))
    if not path.exists():
        return ["Law: not fitted in this run (add `law` to targets)."]
    stats = pd.read_csv(path)
    stats = stats[stats["model"] == LAW_MODEL]
    if stats.empty:
        raise ValueError(f"{path}: no rows of model '{LAW_MODEL}'")
    n = int(stats["n_encoders"].min())
    head = f"Law ({LAW_MODEL}, {LAW_TERMS} terms) on {n} encoders"
    if underdetermined(n):
        return [
            f"{head}: under-determined (fewer than {MIN_DETERMINED} encoders for "
            f"{LAW_TERMS} terms); its R² is no evidence and is not shown.",
            f"  {path}",
        ]
    lines = [
        f"{head}: R² in-sample {stats['r2'].mean():.3f}, leave-one-out "
        f"{stats['loo_r2'].mean():.3f} (mean over {len(stats)} benchmarks)."
    ]
    for row in stats.itertuples():
        lines.append(f"  {row.benchmark}: in-sample {row.r2:.3f}, leave-one-out {row.loo_r2:.3f}")
    return [*lines, f"  {path}"]


def answer_text(run_dir: str | Path, report: str | Path | None = None) -> str:
    """The answer of the run in ``run_dir``; ``report``: the HTML report's path."""
    layout = run_layout(run_dir)
    if not Path(layout.run_dir).is_dir():
        raise FileNotFoundError(f"run folder {layout.run_dir} does not exist")
    report = Path(report) if report else Path(layout.run_dir) / "report.html"
    where = str(report) if report.exists() else f"{report} (not built: make report)"
    return "\n".join(
        [
            f"vislaw run {layout.run_dir}",
            *recommendation_lines(layout),
            *law_lines(layout),
            f"Report: {where}",
        ]
    )


def config_run_dir(config_path: str | Path) -> Path:
    """``<results_dir>/<run>`` of a config file (schema-checked, defaults filled; the encoder
    zoo is not needed for two paths, so the analysis env can run this)."""
    from vislaw.config import load_config

    config = load_config(config_path)
    return Path(RunLayout.from_config(config).run_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.law.answer", description=__doc__.split("\n\n")[0]
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="the run folder, <results_dir>/<run>")
    where.add_argument("--config", help="the run's config file")
    parser.add_argument("--report", help="the HTML report (default <run>/report.html)")
    parser.add_argument(
        "--report-path", action="store_true", help="print only the report's default path"
    )
    args = parser.parse_args(argv)
    run_dir = Path(args.run) if args.run else config_run_dir(args.config)
    if args.report_path:
        print(args.report or run_dir / "report.html")
        return 0
    print(answer_text(run_dir, args.report))
    return 0


if __name__ == "__main__":
    from vislaw.config import run_cli

    sys.exit(run_cli(main))

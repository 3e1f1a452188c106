"""Command line of the law.

    python -m vislaw.law fit --scores resources/paper/ablations_t.csv --format paper_v1 \\
        --out-dir results/paper_v1/law
    python -m vislaw.law recommend --scores my_encoders.csv
    python -m vislaw.law recommend --scores resources/paper/ablations_t.csv --format paper_v1 \\
        --benchmark mmbench_en --finetuned clip224 sd15 dinov2
    python -m vislaw.law strategies --table resources/paper/ablations_t.csv --format paper_v1 \\
        --out results/paper_v1/law
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vislaw.law.settings import LawSettings
from vislaw.law.steps import run_law
from vislaw.law.tables import TABLE_FORMATS, TableError, score_scale
from vislaw.sections import section_values

if TYPE_CHECKING:
    from vislaw.law.policy_mode.rounds import RoundDecision


def law_settings(args: argparse.Namespace) -> LawSettings:
    """The options given as ``law`` settings; the schema's defaults for the others."""
    given = {
        "table_format": args.format,
        "trials": args.trials,
        "k": args.k,
        "budgets": args.budgets,
        "bootstrap": args.bootstrap,
        "random_draws": args.random_draws,
        "confidence": args.confidence,
        "figure_units": args.figure_units,
    }
    values = {key: value for key, value in given.items() if value is not None}
    return LawSettings.from_values(values, seed=section_values("seed", args.seed))


def _fit(args: argparse.Namespace) -> int:
    settings = law_settings(args)
    paths = run_law(
        settings, args.scores, settings.table_format, args.out_dir, benchmarks=args.benchmarks or ()
    )
    print(paths["summary.md"].read_text())
    print(f"wrote {len(paths)} files to {args.out_dir}")
    return 0


def _weights(pairs: Sequence[str] | None) -> dict[str, float]:
    """``--weights mme=2 mmmu_val=1`` as a dict (the policy.weights of the mode)."""
    out = {}
    for pair in pairs or ():
        name, sep, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--weights: expected benchmark=weight, got '{pair}'")
    return out


def _recommend(args: argparse.Namespace) -> int:
    # Local import: the policy modules are only needed here (keeps `fit --help` light).
    from vislaw.law.advise import advise, candidate_table

    table_format = section_values("law.table_format", args.format)
    table = candidate_table(args.scores, table_format, args.benchmark or ())
    if args.finetuned is not None:
        unknown = sorted(set(args.finetuned) - set(table["encoder"]))
        if unknown:
            raise TableError(f"--finetuned: not in {args.scores}: {unknown}")
        table.loc[~table["encoder"].isin(args.finetuned), "score"] = np.nan
    scales = {
        b: score_scale(b, table_format, part["score"].dropna())
        for b, part in table.groupby("benchmark", sort=False)
    }
    seed = section_values("seed", args.seed)
    advice = advise(table, args.strategy, _weights(args.weights), seed, scales)
    decision = advice.decision
    n = table["encoder"].nunique()
    print(f"{decision.n_measured} of {n} encoders finetuned; strategy {decision.strategy}")
    print(f"law fit on the finetuned encoders (means over benchmarks): {advice.fit}")
    if advice.warning:
        print(f"warning: {advice.warning}")
    clipped = sorted(b for b, scale in scales.items() if scale is not None)
    if clipped:
        print(f"intervals clipped to what each benchmark can score: {', '.join(clipped)}")
    if decision.picks:
        print(f"next encoder to finetune: {decision.picks[0]}")
        print(f"  why: {decision.why}")
    else:
        print(f"no encoder to finetune next: {decision.why}")
    _print_ranking(decision, advice.predictions)
    return 0


def _print_ranking(decision: RoundDecision, predictions: pd.DataFrame) -> None:
    """The mode's ranking (weighted normalised score) and each benchmark's raw-unit score:
    measured, or predicted with its 95% interval."""
    ranking = decision.ranking
    order = sorted(ranking, key=lambda e: -ranking[e][0])
    raw = predictions.set_index(["encoder", "benchmark"])
    rows = []
    for rank, name in enumerate(order, start=1):
        row = {"rank": rank, "encoder": name, "weighted": ranking[name][0]}
        for bench in dict.fromkeys(predictions["benchmark"]):
            entry = raw.loc[(name, bench)]
            row["status"] = entry["status"]
            row[bench] = (
                f"{entry['score']:.4g}"
                if entry["status"] == "measured"
                else f"{entry['score']:.4g} [{entry['low']:.4g}, {entry['high']:.4g}]"
            )
        rows.append(row)
    print(
        "ranking (raw units; measured scores where finetuned, the law's predictions with 95% "
        "intervals elsewhere):"
    )
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def _strategies(args: argparse.Namespace) -> int:
    """Every strategy under every protocol (vislaw.law.simulate) into policy_strategies.csv."""
    from pathlib import Path

    from vislaw.io.atomic import write_frame
    from vislaw.law.simulate import best_strategy, strategy_table
    from vislaw.law.tables import FLOAT_FORMAT, read_scores_table
    from vislaw.layout import LAW_STRATEGIES_FILE

    settings = law_settings(args)
    table = read_scores_table(args.table, settings.table_format)
    frame = strategy_table(table, settings.trials, settings.budgets, settings.seed)
    out = Path(args.out) / LAW_STRATEGIES_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    write_frame(out, frame, FLOAT_FORMAT)
    print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if 4 in settings.budgets:
        print(f"best under held_out_benchmark at budget 4: {best_strategy(frame)}")
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.law",
        description="Fit the AC law on a scores table, or recommend the next encoder to finetune.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser(
        "fit",
        help="fit, simulate the AC policy and write the law/ outputs",
        description="Fit every model per benchmark, simulate the AC policy, write CSVs, figures "
        "and summary.md into --out-dir.",
    )
    fit.add_argument("--scores", required=True, help="scores table (CSV)")
    fit.add_argument("--format", choices=TABLE_FORMATS, help="table format (default: tidy)")
    fit.add_argument("--out-dir", required=True, help="folder for the outputs")
    fit.add_argument("--benchmarks", nargs="+", help="only these benchmarks")
    # Defaults (None here): the config schema's (law.*, seed), filled by section_values.
    fit.add_argument("--seed", type=int)
    fit.add_argument("--trials", type=int, help="policy trials per strategy")
    fit.add_argument("--k", type=int, help="success: best encoder in the top-k")
    fit.add_argument("--budgets", type=int, nargs="+", help="for policy.csv")
    fit.add_argument("--bootstrap", type=int, help="resamples (0: none)")
    fit.add_argument("--random-draws", type=int, help="random-input baseline")
    fit.add_argument("--confidence", type=float, help="bootstrap interval level")
    fit.add_argument(
        "--figure-units",
        choices=("raw", "normalised"),
        help="figures in each benchmark's own units (raw, default) or normalised",
    )
    fit.set_defaults(func=_fit)

    strat = sub.add_parser(
        "strategies",
        help="evaluate every finetuning strategy under every protocol",
        description="Runs every strategy as the policy mode does, under the held_out_benchmark, "
        "held_out_encoder, noisy and shared_start protocols (docs/policy.md), and writes "
        "policy_strategies.csv into --out.",
    )
    strat.add_argument("--table", required=True, help="fully measured scores table (CSV)")
    strat.add_argument("--format", choices=TABLE_FORMATS, help="table format (default: tidy)")
    strat.add_argument("--out", required=True, help="folder for policy_strategies.csv")
    strat.add_argument("--seed", type=int)
    strat.add_argument("--trials", type=int, help="trials of the randomised strategies")
    strat.add_argument("--budgets", type=int, nargs="+", help="finetuning budgets")
    for name in ("k", "bootstrap", "random_draws", "confidence", "figure_units"):
        strat.set_defaults(**{name: None})
    strat.set_defaults(func=_strategies)

    rec = sub.add_parser(
        "recommend",
        help="which encoder to finetune next, and the predicted ranking",
        description="Reads encoder, A, C, score (blank score: not finetuned yet; a benchmark "
        "column, if any, gives several benchmarks, picked for jointly as the policy mode does). "
        "Prints the policy's next pick and the ranking by measured scores and the law's "
        "predictions in raw units with 95% intervals.",
    )
    rec.add_argument("--scores", required=True, help="table of encoder, A, C, score (CSV)")
    rec.add_argument("--format", choices=TABLE_FORMATS, help="table format (default: tidy)")
    rec.add_argument(
        "--benchmark", nargs="+", help="only these benchmarks (default: all, picked jointly)"
    )
    rec.add_argument("--strategy", help="a policy.strategy (default: the schema's, docs/policy.md)")
    rec.add_argument(
        "--weights", nargs="+", metavar="BENCHMARK=W", help="policy.weights (default: equal)"
    )
    rec.add_argument(
        "--finetuned",
        nargs="+",
        help="treat only these encoders as finetuned (hides the others' scores)",
    )
    rec.add_argument("--seed", type=int, help="seeds the policy's random pick (default: 0)")
    rec.set_defaults(func=_recommend)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

"""Fit the law on a tidy scores table and write every output of a run's ``law/`` folder.

The file names and the columns of ``r2.csv`` and ``policy.csv`` are fixed so that runs (the
paper's table, our own measurements, the demo) can be compared file by file. Every file is
written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm import tqdm

from vislaw.io.atomic import write_frame, write_text_atomic
from vislaw.law.fit import (
    LAW_MODEL,
    MODELS,
    BenchmarkFit,
    benchmark_rng,
    fit_all,
    fit_statement,
    underdetermined,
)
from vislaw.law.plot import (
    law_figure,
    overview_figure,
    save_figure,
    views_for,
    write_benchmark_figures,
)
from vislaw.law.region_sampler import recall_curve, simulate
from vislaw.law.settings import LawSettings
from vislaw.law.tables import FLOAT_FORMAT, score_scale
from vislaw.layout import LAW_FIGURES_DIR, LAW_FILES, LAW_STRATEGIES_FILE

R2_COLUMNS = (
    "benchmark",
    "r2_a_linear",
    "r2_c_linear",
    "r2_ac_linear",
    "r2_a_quadratic",
    "r2_c_quadratic",
    "r2_ac_quadratic",
    "r2_random_quadratic",
    "loo_r2_a_quadratic",
    "loo_r2_c_quadratic",
    "loo_r2_ac_linear",
    "loo_r2_ac_quadratic",
)
# Out of sample, one per model of the law's ladder (A only, C only, AC linear, the law), so the
# gain of each term is visible where in-sample R² cannot show it.
LOO_MODELS = ("a_quadratic", "c_quadratic", "ac_linear", LAW_MODEL)


def r2_table(fits: dict[str, BenchmarkFit]) -> pd.DataFrame:
    """One row per benchmark (columns :data:`R2_COLUMNS`) and a final ``mean`` row."""
    rows = []
    for name, fit in fits.items():
        row = {"benchmark": name}
        row.update({f"r2_{model}": fit.models[model].r2 for model in MODELS})
        row["r2_random_quadratic"] = fit.r2_random
        row.update({f"loo_r2_{model}": fit.models[model].loo_r2 for model in LOO_MODELS})
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(R2_COLUMNS))
    mean = {"benchmark": "mean", **table[list(R2_COLUMNS[1:])].mean().to_dict()}
    return pd.concat([table, pd.DataFrame([mean])], ignore_index=True)


def coefficients_table(fits: dict[str, BenchmarkFit]) -> pd.DataFrame:
    """Long table: benchmark, model, term, coef and its bootstrap interval (normalised scale)."""
    rows = []
    for name, fit in fits.items():
        for model, result in fit.models.items():
            for j, term in enumerate(MODELS[model]):
                boot = result.boot
                rows.append(
                    {
                        "benchmark": name,
                        "model": model,
                        "term": term,
                        "coef": result.coef[j],
                        "ci_low": boot.coef_low[j] if boot else np.nan,
                        "ci_high": boot.coef_high[j] if boot else np.nan,
                    }
                )
    return pd.DataFrame(rows)


def fit_stats_table(fits: dict[str, BenchmarkFit]) -> pd.DataFrame:
    """Per benchmark and model: in-sample R² with its bootstrap interval, LOO R² and rank
    correlation of the held-out predictions."""
    rows = []
    for name, fit in fits.items():
        for model, result in fit.models.items():
            boot = result.boot
            rows.append(
                {
                    "benchmark": name,
                    "model": model,
                    "n_encoders": len(fit.y),
                    "n_terms": len(MODELS[model]),
                    "r2": result.r2,
                    "r2_ci_low": boot.r2_low if boot else np.nan,
                    "r2_ci_high": boot.r2_high if boot else np.nan,
                    "bootstrap_used": boot.used if boot else 0,
                    "loo_r2": result.loo_r2,
                    "loo_spearman": result.loo_spearman,
                }
            )
    return pd.DataFrame(rows)


def predictions_table(fits: dict[str, BenchmarkFit]) -> pd.DataFrame:
    """Per benchmark and encoder: raw and normalised inputs, the law's fit and LOO prediction."""
    frames = []
    for name, fit in fits.items():
        frame = fit.raw.copy()
        frame.insert(0, "benchmark", name)
        frame["A_norm"], frame["C_norm"], frame["score_norm"] = fit.a, fit.c, fit.y
        frame["fitted"] = fit.law.fitted
        frame["loo"] = fit.law.loo
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def policy_tables(
    fits: dict[str, BenchmarkFit], settings: LawSettings
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate the AC policy and the random order; returns (policy.csv, policy_curves.csv)."""
    summary, curves = [], []
    for name, fit in tqdm(fits.items(), desc="AC policy", unit="benchmark"):
        n = len(fit.y)
        needed = {
            strategy: simulate(
                fit.a,
                fit.c,
                fit.y,
                settings.trials,
                settings.k,
                benchmark_rng(settings.seed, name, f"policy/{strategy}"),
                strategy,
            )
            for strategy in ("ac", "random")
        }
        recall = {strategy: recall_curve(values, n) for strategy, values in needed.items()}
        best = [fit.encoders[i] for i in np.flatnonzero(fit.y == fit.y.max())]
        row = {
            "benchmark": name,
            "best_encoder": "|".join(best),
            "mean_finetunes_ac": needed["ac"].mean(),
            "mean_finetunes_random": needed["random"].mean(),
        }
        for budget in settings.budgets:
            if not 1 <= budget <= n:
                raise ValueError(f"law.budgets: budget {budget} outside 1..{n} encoders")
            row[f"recall_at_{settings.k}_budget_{budget}"] = recall["ac"][budget - 1]
        summary.append(row)
        for strategy, values in needed.items():
            counts = np.bincount(values, minlength=n + 1)[1:]
            for budget in range(1, n + 1):
                curves.append(
                    {
                        "benchmark": name,
                        "strategy": strategy,
                        "budget": budget,
                        "stopped_fraction": counts[budget - 1] / len(values),
                        "recall_at_k": recall[strategy][budget - 1],
                    }
                )
    return pd.DataFrame(summary), pd.DataFrame(curves)


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _fit_lines(r2: pd.DataFrame, law: pd.DataFrame, settings: LawSettings, n: int) -> list[str]:
    """The fit section: per benchmark, R² of the main models and the law's honest numbers
    (``law``: fit_stats.csv's rows of the law's model, indexed by benchmark)."""
    level = round(100 * settings.confidence)
    lines = [
        "## Fit: score ~ [1, A, C, A², AC, C²]",
        "",
        f"| benchmark | R² A quad | R² C quad | R² AC lin | R² AC quad [{level}% CI] | LOO R² | "
        "LOO ρ | R² random | LOO R² A quad | LOO R² C quad | LOO R² AC lin |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if underdetermined(n):
        return [
            "## Fit: score ~ [1, A, C, A², AC, C²]",
            "",
            f"**Under-determined**: {fit_statement(n, np.nan, np.nan)}; the R² of every model "
            "is in r2.csv and fit_stats.csv, but none of them is evidence for the law yet.",
            "",
        ]
    for _, row in r2.iterrows():
        name = row["benchmark"]
        if name in law.index:
            ci = f" [{_fmt(law.at[name, 'r2_ci_low'])}, {_fmt(law.at[name, 'r2_ci_high'])}]"
            rho = _fmt(law.at[name, "loo_spearman"])
        else:
            ci, rho = "", _fmt(law["loo_spearman"].mean())
        lines.append(
            f"| {name} | {_fmt(row['r2_a_quadratic'])} | {_fmt(row['r2_c_quadratic'])} | "
            f"{_fmt(row['r2_ac_linear'])} | {_fmt(row['r2_ac_quadratic'])}{ci} | "
            f"{_fmt(row['loo_r2_ac_quadratic'])} | {rho} | {_fmt(row['r2_random_quadratic'])} | "
            f"{_fmt(row['loo_r2_a_quadratic'])} | {_fmt(row['loo_r2_c_quadratic'])} | "
            f"{_fmt(row['loo_r2_ac_linear'])} |"
        )
    return lines + [
        "",
        f"In-sample R² on {n} points flatters a 6-term model: random inputs already reach the "
        "R² random column. Leave-one-out R² (each encoder predicted by the model fitted on the "
        "others) and its rank correlation ρ are the honest numbers; the last three columns give "
        "LOO R² of A alone, C alone and linear AC, so the gain of each term of the law is "
        "visible out of sample.",
        "",
    ]


def _policy_row(row: Mapping[str, Any], recalls: list[tuple[float, float]]) -> str:
    """One row of the policy table: a benchmark's (or the mean's) finetunes and Recall@k
    pairs, AC / random."""
    pairs = " | ".join(f"{_fmt(ac)} / {_fmt(random)}" for ac, random in recalls)
    best = f" {row['best_encoder']} " if row["best_encoder"] else " "
    return (
        f"| {row['benchmark']} |{best}| {_fmt(row['mean_finetunes_ac'])} | "
        f"{_fmt(row['mean_finetunes_random'])} | {pairs} |"
    )


def _policy_lines(
    policy: pd.DataFrame, curves: pd.DataFrame, settings: LawSettings, n: int
) -> list[str]:
    """The AC policy section: finetunes needed and Recall@k per budget, AC against random."""
    k = settings.k
    recall_cols = [f"recall_at_{k}_budget_{b}" for b in settings.budgets]
    random_recall = curves[curves["strategy"] == "random"].pivot(
        index="benchmark", columns="budget", values="recall_at_k"
    )
    lines = [
        f"## AC policy ({settings.trials} trials per strategy, stop when the best encoder is in "
        f"the top-{k})",
        "",
        "| benchmark | best encoder | finetunes AC | finetunes random | "
        + " | ".join(f"Recall@{k}, budget {b}: AC / random" for b in settings.budgets)
        + " |",
        "|---|---|---|---|" + "---|" * len(settings.budgets),
    ]
    columns = list(zip(recall_cols, settings.budgets, strict=True))
    for _, row in policy.iterrows():
        recalls = [(row[col], random_recall.at[row["benchmark"], b]) for col, b in columns]
        lines.append(_policy_row(row, recalls))
    mean = policy[["mean_finetunes_ac", "mean_finetunes_random"]].mean()
    recalls = [(policy[col].mean(), random_recall[b].mean()) for col, b in columns]
    lines.append(_policy_row({"benchmark": "mean", "best_encoder": "", **mean.to_dict()}, recalls))
    no_law = ", ".join(f"{b / n:.2f} at budget {b}" for b in settings.budgets)
    return lines + [
        "",
        "Random: a uniformly random finetuning order, ranked by the same law. Without any law "
        f"(finetune in random order until the best one is measured) Recall@{k} is budget / "
        f"{n}: {no_law}, and the mean number of finetunes is {(n + 1) / 2:.1f}.",
        "",
    ]


def summary_markdown(
    r2: pd.DataFrame,
    stats: pd.DataFrame,
    policy: pd.DataFrame,
    curves: pd.DataFrame,
    settings: LawSettings,
) -> str:
    """A short human-readable report of the run (the CSVs hold the full numbers)."""
    law = stats[stats["model"] == LAW_MODEL].set_index("benchmark")
    n = int(law["n_encoders"].iloc[0])
    lines = [
        "# The AC law",
        "",
        f"Scores: {settings.source or 'tidy table'}; {n} encoders per benchmark; seed "
        f"{settings.seed}. A, C and the score are min-max normalised per benchmark.",
        "",
        *_fit_lines(r2, law, settings, n),
        *_policy_lines(policy, curves, settings, n),
        "Files: r2.csv, fit_stats.csv, coefficients.csv, predictions.csv, policy.csv, "
        "policy_curves.csv, law.png / law.svg (every benchmark), figures/<benchmark>.png|svg|pdf "
        "(one per benchmark, in its own units), law_overview.png.",
        "",
    ]
    return "\n".join(lines)


def write_figures(
    fits: dict[str, BenchmarkFit],
    table: pd.DataFrame,
    out_dir: Path,
    settings: LawSettings,
    table_format: str,
) -> dict[str, Path]:
    """law.png / law.svg (every benchmark) and ``figures/<benchmark>.<png|svg|pdf>``, in the
    benchmarks' own units (vislaw.law.tables.score_scale) unless ``law.figure_units`` says
    normalised; returns the per-benchmark paths by name relative to ``out_dir``."""
    scales = {
        name: score_scale(name, table_format, table.loc[table["benchmark"] == name, "score"])
        for name in fits
    }
    views = views_for(fits, scales, normalised=settings.figure_units == "normalised")
    fig = law_figure(views)
    save_figure(fig, out_dir / "law.png")
    save_figure(fig, out_dir / "law.svg")
    plt.close(fig)
    written = write_benchmark_figures(views, out_dir / LAW_FIGURES_DIR)
    return {path.relative_to(out_dir).as_posix(): path for path in written}


def write_law_outputs(
    table: pd.DataFrame, out_dir: str | Path, settings: LawSettings, table_format: str = "tidy"
) -> dict[str, Path]:
    """Fit, simulate, plot and write :data:`vislaw.layout.LAW_FILES` and the per-benchmark
    figures into ``out_dir``; returns their paths. ``table_format``: the format ``table`` was
    read from, which fixes its units (the paper's table prints accuracies in percent)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fits = fit_all(
        table,
        seed=settings.seed,
        resamples=settings.bootstrap,
        random_draws=settings.random_draws,
        confidence=settings.confidence,
    )
    paths = {name: out_dir / name for name in LAW_FILES}
    r2 = r2_table(fits)
    stats = fit_stats_table(fits)
    policy, curves = policy_tables(fits, settings)
    tables = {
        "r2.csv": r2,
        "coefficients.csv": coefficients_table(fits),
        "fit_stats.csv": stats,
        "predictions.csv": predictions_table(fits),
        "policy.csv": policy,
        "policy_curves.csv": curves,
    }
    for name, frame in tables.items():
        write_frame(paths[name], frame, FLOAT_FORMAT)
    paths.update(write_figures(fits, table, out_dir, settings, table_format))
    fig = overview_figure(r2, curves, settings.k)
    save_figure(fig, paths["law_overview.png"])
    plt.close(fig)
    write_text_atomic(paths["summary.md"], summary_markdown(r2, stats, policy, curves, settings))
    if settings.strategies:
        from vislaw.law.simulate import strategy_table

        strategies = strategy_table(table, settings.trials, settings.budgets, settings.seed)
        paths[LAW_STRATEGIES_FILE] = out_dir / LAW_STRATEGIES_FILE
        write_frame(paths[LAW_STRATEGIES_FILE], strategies, FLOAT_FORMAT)
    return paths

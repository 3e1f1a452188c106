"""``python -m vislaw.law recommend``: the policy mode's next pick, from a table, in one call.

It runs the mode's own round (vislaw.law.policy_mode.decide.decide_round) on a table of
encoder, A, C and score (blank: not finetuned), over one or several benchmarks jointly, with the
mode's strategies and weights, so that a user's next finetune is the one the pipeline would
order. Predictions are given in each benchmark's raw units with 95% intervals (the posterior mean
and sd mapped back through the measured encoders' range).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vislaw.law.fit import underdetermined
from vislaw.law.policy_mode.decide import decide_round, posterior_by_benchmark
from vislaw.law.policy_mode.rounds import RoundDecision, fit_text
from vislaw.law.policy_mode.state import PolicyState, prior_coefficients
from vislaw.law.settings import PolicySettings
from vislaw.law.strategies import N_TERMS, PRIOR_STRATEGIES
from vislaw.law.tables import TableError, read_candidates, read_scores_table

if TYPE_CHECKING:
    from vislaw.eval.tasks import Scale

SINGLE = "score"  # the benchmark's name when a tidy table has no benchmark column


def candidate_table(
    path: str | Path, table_format: str, benchmarks: Sequence[str] = ()
) -> pd.DataFrame:
    """encoder, benchmark, A, C, score (NaN: not finetuned) for ``benchmarks`` (empty: every
    benchmark of the table; a tidy table without a benchmark column is one benchmark)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"scores table not found: {path}")
    if not benchmarks:
        if table_format == "tidy" and "benchmark" not in pd.read_csv(path, nrows=0).columns:
            return read_candidates(path, table_format).assign(benchmark=SINGLE)
        if table_format == "tidy":
            benchmarks = list(dict.fromkeys(pd.read_csv(path)["benchmark"].astype(str)))
        else:
            benchmarks = list(dict.fromkeys(read_scores_table(path, table_format)["benchmark"]))
    frames = [read_candidates(path, table_format, b).assign(benchmark=b) for b in benchmarks]
    return pd.concat(frames, ignore_index=True)


def policy_state(table: pd.DataFrame) -> PolicyState:
    """The mode's state from a candidate table (every benchmark must list every encoder)."""
    wide = table.pivot_table(
        index="benchmark", columns="encoder", values=["A", "score"], dropna=False
    )
    encoders = list(dict.fromkeys(table["encoder"]))
    benchmarks = list(dict.fromkeys(table["benchmark"]))
    counts = table.groupby("benchmark")["encoder"].nunique()
    short = sorted(counts[counts != len(encoders)].index)
    if short:
        raise TableError(f"benchmarks {short} do not list every encoder {encoders}")
    c = table.drop_duplicates("encoder").set_index("encoder")["C"].loc[encoders]
    return PolicyState(
        encoders,
        benchmarks,
        wide["A"].loc[benchmarks, encoders].to_numpy(dtype=float),
        c.to_numpy(dtype=float),
        wide["score"].loc[benchmarks, encoders].to_numpy(dtype=float),
    )


@dataclass(frozen=True)
class Advice:
    decision: RoundDecision  # the mode's round 0
    predictions: pd.DataFrame  # encoder, benchmark, status, score, low, high (raw units)
    warning: str | None
    fit: str = ""  # the fit statement: n, in-sample and LOO R², or under-determined


def raw_predictions(
    state: PolicyState, means, sds, scales: Mapping[str, Scale | None] | None = None
) -> pd.DataFrame:
    """Per benchmark and encoder: the measured score, or the posterior mean with its 95%
    interval mapped to the raw scale of the measured encoders (NaN under two measured) and
    clipped to what the benchmark can score (``scales[benchmark]``; None: not clipped)."""
    known, rows = state.known, []
    for j, bench in enumerate(state.benchmarks):
        low, high = (np.nanmin(state.y[j]), np.nanmax(state.y[j])) if known.sum() >= 2 else (0, 0)
        span = high - low if known.sum() >= 2 else np.nan
        scale = (scales or {}).get(bench)
        lo, hi = (scale.low, scale.high) if scale is not None else (-np.inf, np.inf)
        for i, name in enumerate(state.encoders):
            mean, half = means[j][i] * span + low, 1.96 * sds[j][i] * span
            measured = bool(known[i])
            rows.append(
                {
                    "encoder": name,
                    "benchmark": bench,
                    "status": "measured" if measured else "predicted",
                    "score": state.y[j][i] if measured else np.clip(mean, lo, hi),
                    "low": state.y[j][i] if measured else np.clip(mean - half, lo, hi),
                    "high": state.y[j][i] if measured else np.clip(mean + half, lo, hi),
                }
            )
    return pd.DataFrame(rows)


def advise(
    table: pd.DataFrame,
    strategy: str | None,
    weights: Mapping[str, float],
    seed: int,
    scales: Mapping[str, Scale | None] | None = None,
) -> Advice:
    """The mode's round 0 on ``table`` (the finetuned encoders are those with a score);
    ``scales``: each benchmark's units in the table (vislaw.law.tables.score_scale), to which
    the intervals are clipped."""
    values = {"weights": dict(weights), **({"strategy": strategy} if strategy else {})}
    settings = PolicySettings.from_values(values, seed=seed)
    state = policy_state(table)
    prior = None
    if settings.strategy in PRIOR_STRATEGIES:
        prior = prior_coefficients(read_scores_table(settings.prior_table, settings.prior_format))
    decision = decide_round(0, state, [], settings, prior, scales)
    means, sds = posterior_by_benchmark(state, settings, prior)
    measured = int(state.known.sum())
    warning = None
    if underdetermined(measured, N_TERMS):
        warning = (
            f"only {measured} encoder(s) measured: the law has {N_TERMS} terms, so the fit is "
            f"under-determined and its predictions rest mostly on the prior until at least "
            f"{N_TERMS + 2} are measured"
        )
    fit = fit_text(decision)
    return Advice(decision, raw_predictions(state, means, sds, scales), warning, fit)

"""The scores a policy round sees: A and C of every encoder, the scores measured so far.

Kept apart from the decision so that the simulation (vislaw.law.simulate) and ``recommend``
(vislaw.law.advise) build the same state the mode does from their own tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from vislaw.law.strategies import law_coefficients


@dataclass
class PolicyState:
    """Encoders x benchmarks: raw A (per benchmark), raw C, raw score (NaN: not finetuned)."""

    encoders: list[str]
    benchmarks: list[str]
    a: np.ndarray  # (benchmarks, encoders)
    c: np.ndarray  # (encoders,)
    y: np.ndarray  # (benchmarks, encoders)

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.y).any(axis=0)


def build_state(
    a_scores: pd.DataFrame,
    c_scores: pd.DataFrame,
    scores: pd.DataFrame,
    encoders: Sequence[str],
    benchmarks: Sequence[str],
    a_column: str = "a_cosine",
) -> PolicyState:
    """Join the A/C tables and the scores (encoder, benchmark, score) known so far."""
    a_table = a_scores.pivot(index="benchmark", columns="encoder", values=a_column)
    c_table = c_scores.set_index("encoder")["pck10_image"] * 100.0
    missing = [e for e in encoders if e not in c_table.index or e not in a_table.columns]
    if missing:
        raise ValueError(f"policy: no A or C score for encoders {missing}")
    y = np.full((len(benchmarks), len(encoders)), np.nan)
    for row in scores.itertuples():
        if row.encoder in encoders and row.benchmark in benchmarks:
            y[list(benchmarks).index(row.benchmark), list(encoders).index(row.encoder)] = row.score
    return PolicyState(
        list(encoders),
        list(benchmarks),
        a_table.loc[list(benchmarks), list(encoders)].to_numpy(dtype=float),
        c_table.loc[list(encoders)].to_numpy(dtype=float),
        y,
    )


def prior_coefficients(table: pd.DataFrame | None) -> np.ndarray | None:
    """The law's coefficients of every benchmark of a tidy table (the learned prior's data)."""
    if table is None:
        return None
    return np.array(
        [
            law_coefficients(g["A"].to_numpy(), g["C"].to_numpy(), g["score"].to_numpy())
            for _, g in table.groupby("benchmark", sort=False)
        ]
    )


def read_scores_file(path: str | Path | None) -> pd.DataFrame:
    """``policy.scores_file``: encoders finetuned elsewhere (encoder, benchmark, score)."""
    if not path:
        return pd.DataFrame(columns=["encoder", "benchmark", "score"])
    table = pd.read_csv(path)
    missing = {"encoder", "benchmark", "score"} - set(table.columns)
    if missing:
        raise ValueError(f"policy.scores_file {path}: missing columns {sorted(missing)}")
    return table[["encoder", "benchmark", "score"]]

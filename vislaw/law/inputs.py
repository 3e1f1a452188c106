"""The law's tidy input from this run's own measurements.

Joins ``a_scores.csv`` (A: ``a_cosine`` per benchmark, or ``a_loglik``), ``c_scores.csv``
(C: ``pck10_image`` x 100, the paper's scale) and ``benchmarks.csv`` (the benchmark's primary
metric, vislaw.eval.tasks) into ``encoder, benchmark, A, C, score``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vislaw.eval.tasks import BENCHMARKS
from vislaw.io.provenance import check_numeric_frame

A_COLUMNS = {"cosine": "a_cosine", "loglik": "a_loglik"}


def _drop_not_scored(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Benchmark scores that were not measured (NaN with a note, e.g. a GPT judge without an
    API key; vislaw.eval.results) leave the law, with their A rows: never fitted as 0."""
    missing = b[b["score"].isna()]
    if missing.empty:
        return a, b
    notes = missing["note"] if "note" in missing else [""] * len(missing)
    for encoder, bench, note in zip(missing["encoder"], missing["benchmark"], notes, strict=True):
        print(f"law input: {encoder} {bench} not scored ({note}); left out")
    dropped = set(zip(missing["encoder"], missing["benchmark"], strict=True))
    keep = [pair not in dropped for pair in zip(a["encoder"], a["benchmark"], strict=True)]
    return a[keep], b[b["score"].notna()]


def _primary_rows(path: str | Path, b: pd.DataFrame) -> list[bool]:
    """Which rows of the benchmarks table are the score the law fits. A paper benchmark's is
    its fixed metric (MME's table also has the cognition score); any other benchmark (an
    lmms-eval task named in the config) has exactly the one metric its config entry chose,
    which this table, not a default looked up again, records."""
    primary = {}
    for name, metrics in b.groupby("benchmark")["metric"]:
        if name in BENCHMARKS:
            primary[name] = BENCHMARKS[name].metric
        elif metrics.nunique() != 1:
            raise ValueError(f"{path}: benchmark {name!r} has metrics {sorted(set(metrics))}")
        else:
            primary[name] = metrics.iloc[0]
    return [primary[n] == m for n, m in zip(b["benchmark"], b["metric"], strict=True)]


def build_law_input(
    a_scores: str | Path, c_scores: str | Path, benchmarks: str | Path, a_definition: str = "cosine"
) -> pd.DataFrame:
    a = pd.read_csv(a_scores)
    c = pd.read_csv(c_scores)
    b = pd.read_csv(benchmarks)
    column = A_COLUMNS[a_definition]
    # numbers, or a refusal naming the file, line and column (a word would join as a string)
    check_numeric_frame(a_scores, a, [column])
    check_numeric_frame(c_scores, c, ["pck10_image"])
    check_numeric_frame(benchmarks, b, ["score"], missing_ok=["score"])
    b = b[_primary_rows(benchmarks, b)]
    a, b = _drop_not_scored(a, b)
    table = (
        a[["encoder", "benchmark", column]]
        .rename(columns={column: "A"})
        .merge(c[["encoder", "pck10_image"]], on="encoder", how="inner")
        .merge(b[["encoder", "benchmark", "score"]], on=["encoder", "benchmark"], how="inner")
    )
    table["C"] = 100.0 * table.pop("pck10_image")
    expected = len(a)
    if len(table) != expected:
        raise ValueError(
            f"law input: {len(table)} joined rows for {expected} A-score rows; check that "
            f"{c_scores} and {benchmarks} cover every encoder and benchmark of {a_scores}"
        )
    return table[["encoder", "benchmark", "A", "C", "score"]]

"""The C-score row's columns and the C-score table: step ``c_scores_table``.

One row per encoder (:data:`TABLE_COLUMNS` first, the law reads ``pck10_image``); the table
step concatenates the per-encoder CSVs and refuses a file that lacks a column or repeats an
encoder.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vislaw.io.atomic import write_csv
from vislaw.io.provenance import InputError
from vislaw.scores.correspondence.pck import pck_table

if TYPE_CHECKING:
    from vislaw.scores.correspondence.queries import Queries
    from vislaw.scores.correspondence.score import ScoreInputs

# The columns every C-score row starts with (the law reads pck10_image); extras follow.
TABLE_COLUMNS: tuple[str, ...] = (
    "encoder",
    "pck10_image",
    "pck05_image",
    "pck01_image",
    "pck10_point",
    "pck10_geo",
    "n_pairs",
    "n_points",
)


def make_row(
    encoder: str, predicted: np.ndarray, queries: Queries, inputs: ScoreInputs
) -> dict[str, Any]:
    """The CSV row: :data:`TABLE_COLUMNS` first, then every other PCK variant and the settings."""
    scores = pck_table(predicted, queries, inputs.alphas)
    row: dict[str, Any] = {
        "encoder": encoder,
        "n_pairs": queries.n_pairs,
        "n_points": queries.n_points,
        "n_geo_points": int(queries.geo.sum()),
    }
    row.update(scores)
    row.update(asdict(inputs.settings))
    row["split"] = inputs.split
    head = [c for c in TABLE_COLUMNS if c in row]
    return {**{c: row[c] for c in head}, **{k: v for k, v in row.items() if k not in head}}


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_c_scores_table(paths: Sequence[str | Path], out: str | Path) -> None:
    """Step ``c_scores_table``: the per-encoder C-score CSVs (one row each, same columns)
    concatenated into one table."""
    rows: list[dict[str, str]] = []
    seen: dict[str, str | Path] = {}
    for path in paths:
        got = read_rows(path)
        if len(got) != 1:
            raise ValueError(f"{path}: expected one C-score row, found {len(got)}")
        missing = [c for c in TABLE_COLUMNS if c not in got[0]]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        encoder = got[0]["encoder"]
        if encoder in seen:  # one row copied over another's file: the law would fit it twice
            raise InputError(path, f"records encoder {encoder!r}, as {seen[encoder]} does")
        seen[encoder] = path
        rows.extend(got)
    write_csv(out, rows)

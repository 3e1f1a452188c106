"""Scores tables: the one shape the law reads, and the reader for the paper's released table.

The law only needs, per encoder and benchmark, an A score, a C score and the benchmark score.
Every source (the paper's wide CSV, or the tidy table that the DAG writes from its own
measurements) is turned into the same tidy frame first, so fitting, plotting and the policy never
see where the numbers came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from vislaw.eval.tasks import Scale

TIDY_COLUMNS = ("encoder", "benchmark", "A", "C", "score")
TABLE_FORMATS = ("paper_v1", "tidy")
FLOAT_FORMAT = "%.6g"  # the tables the law and the policy write: six significant digits

# The paper's model names -> the encoder names of our configs (config.yaml, config/paper_v1.yaml).
PAPER_ENCODERS: dict[str, str] = {
    "CLIP336": "clip336",
    "CLIP224": "clip224",
    "OpenCLIP": "openclip",
    "DINOv2": "dinov2",
    "SDim": "sdim",
    "SD1.5": "sd15",
    "SDXL": "sdxl",
    "DiT": "dit",
    "SD3": "sd3",
    "SD2.1": "sd21",
    "SigLIP": "siglip_b",
    "CLIP224+DINOv2": "clip224+dinov2",
    "CLIP336+DINOv2": "clip336+dinov2",
}

PAPER_BENCHMARKS = (
    "mmbench_en",
    "mme",
    "mmmu_val",
    "ok_vqa",
    "textvqa_val",
    "vizwiz_vqa_val",
    "scienceqa_img",
    "seed_image",
)
PAPER_C_COLUMN = "corres"
# Derived columns of some benchmarks use a shorter prefix (VizWiz: `vizwiz_vqa_*`).
_SHORT_PREFIX = {"vizwiz_vqa_val": "vizwiz_vqa"}


class TableError(ValueError):
    """A scores table that cannot be read; the message names the file and the column or row."""


def _a_column(columns: Sequence[str], benchmark: str, path: Path) -> str:
    """The A column of a benchmark: ``<benchmark>_average``, or its short-prefix spelling."""
    candidates = [f"{benchmark}_average"]
    if benchmark in _SHORT_PREFIX:
        candidates.append(f"{_SHORT_PREFIX[benchmark]}_average")
    for name in candidates:
        if name in columns:
            return name
    raise TableError(f"{path}: no A column for benchmark '{benchmark}' (looked for {candidates})")


def read_paper_table(path: str | Path, benchmarks: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's wide table (``resources/paper/ablations_t.csv``) as a tidy scores table.

    A = ``<benchmark>_average`` (mean cosine-vs-CLIP over the 224 and 336 references),
    C = ``corres`` (PCK@0.10 x 100), score = the benchmark column. Model names are mapped to our
    encoder names; an unknown name is an error rather than a silently dropped row.
    """
    path = Path(path)
    if not path.is_file():
        raise TableError(f"scores table not found: {path}")
    wide = pd.read_csv(path)
    for column in ("model", PAPER_C_COLUMN):
        if column not in wide.columns:
            raise TableError(f"{path}: missing column '{column}' (is this the paper's table?)")
    unknown = sorted(set(wide["model"]) - set(PAPER_ENCODERS))
    if unknown:
        raise TableError(
            f"{path}: unknown model name(s) {unknown}; known: {sorted(PAPER_ENCODERS)}"
        )
    wanted = list(benchmarks) if benchmarks else list(PAPER_BENCHMARKS)
    frames = []
    for benchmark in wanted:
        if benchmark not in wide.columns:
            raise TableError(f"{path}: no score column for benchmark '{benchmark}'")
        frames.append(
            pd.DataFrame(
                {
                    "encoder": wide["model"].map(PAPER_ENCODERS),
                    "benchmark": benchmark,
                    "A": wide[_a_column(wide.columns, benchmark, path)],
                    "C": wide[PAPER_C_COLUMN],
                    "score": wide[benchmark],
                }
            )
        )
    return check_tidy(pd.concat(frames, ignore_index=True), path)


def check_tidy(table: pd.DataFrame, source: str | Path = "<table>") -> pd.DataFrame:
    """Validate a tidy table: the five columns, finite numbers, one row per encoder x benchmark.

    Returns a copy with exactly the tidy columns, numeric A/C/score, string names.
    """
    missing = [c for c in TIDY_COLUMNS if c not in table.columns]
    if missing:
        raise TableError(f"{source}: missing column(s) {missing}; a tidy table has {TIDY_COLUMNS}")
    out = table.loc[:, list(TIDY_COLUMNS)].copy()
    out["encoder"] = out["encoder"].astype(str)
    out["benchmark"] = out["benchmark"].astype(str)
    for column in ("A", "C", "score"):
        values = pd.to_numeric(out[column], errors="coerce")
        bad = out.loc[~np.isfinite(values.to_numpy(dtype=float)), ["encoder", "benchmark"]]
        if len(bad):
            row = bad.iloc[0]
            raise TableError(
                f"{source}: column '{column}' is missing or not a number for encoder "
                f"'{row['encoder']}', benchmark '{row['benchmark']}'"
            )
        out[column] = values.astype(float)
    duplicated = out.duplicated(["encoder", "benchmark"])
    if duplicated.any():
        row = out.loc[duplicated].iloc[0]
        raise TableError(
            f"{source}: more than one row for encoder '{row['encoder']}', "
            f"benchmark '{row['benchmark']}'"
        )
    return out.reset_index(drop=True)


def read_tidy_table(path: str | Path) -> pd.DataFrame:
    """A tidy scores CSV (encoder, benchmark, A, C, score; extra columns are ignored)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"scores table not found: {path}")
    return check_tidy(pd.read_csv(path), path)


def read_scores_table(
    path: str | Path, table_format: str = "tidy", benchmarks: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read a scores table in either format; optionally keep only ``benchmarks`` (all must exist)."""
    if table_format == "paper_v1":
        return read_paper_table(path, benchmarks)
    if table_format != "tidy":
        raise TableError(f"unknown table format '{table_format}'; known: {TABLE_FORMATS}")
    table = read_tidy_table(path)
    if benchmarks:
        absent = sorted(set(benchmarks) - set(table["benchmark"]))
        if absent:
            raise TableError(f"{path}: no rows for benchmark(s) {absent}")
        table = table[table["benchmark"].isin(list(benchmarks))].reset_index(drop=True)
    return table


def read_candidates(
    path: str | Path, table_format: str = "tidy", benchmark: str | None = None
) -> pd.DataFrame:
    """Encoders for ``recommend``: encoder, A, C, score, where a blank score means "not
    finetuned yet". A ``benchmark`` column, if present, selects the rows of ``benchmark``
    (required when the table holds more than one)."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"scores table not found: {path}")
    if table_format == "paper_v1":
        table = read_paper_table(path, [benchmark] if benchmark else None)
    elif table_format == "tidy":
        table = pd.read_csv(path)
    else:
        raise TableError(f"unknown table format '{table_format}'; known: {TABLE_FORMATS}")
    if "benchmark" in table.columns:
        present = list(dict.fromkeys(table["benchmark"].astype(str)))
        if benchmark is None and len(present) > 1:
            raise TableError(f"{path}: holds benchmarks {present}; choose one with --benchmark")
        chosen = benchmark or present[0]
        if chosen not in present:
            raise TableError(f"{path}: no rows for benchmark '{chosen}'; present: {present}")
        table = table[table["benchmark"].astype(str) == chosen]
    missing = [c for c in ("encoder", "A", "C", "score") if c not in table.columns]
    if missing:
        raise TableError(f"{path}: missing column(s) {missing}")
    out = table.loc[:, ["encoder", "A", "C", "score"]].copy().reset_index(drop=True)
    out["encoder"] = out["encoder"].astype(str)
    for column in ("A", "C"):
        out[column] = pd.to_numeric(out[column], errors="coerce")
        if out[column].isna().any():
            bad = out.loc[out[column].isna(), "encoder"].iloc[0]
            raise TableError(f"{path}: column '{column}' is missing for encoder '{bad}'")
    out["score"] = pd.to_numeric(out["score"], errors="coerce")
    if out["encoder"].duplicated().any():
        bad = out.loc[out["encoder"].duplicated(), "encoder"].iloc[0]
        raise TableError(f"{path}: encoder '{bad}' appears more than once")
    return out


def restrict_to_config(
    table: pd.DataFrame, encoders: Iterable[str], source: str | Path = "<table>"
) -> pd.DataFrame:
    """Keep the rows of the config's encoders, saying which rows and encoders do not match.

    A table may hold more encoders than a run compares (drop them, loudly) and a config may hold
    helpers that have no scores of their own (``dinov2_336`` only feeds a fusion), so neither
    side has to match the other exactly; no match at all is an error.
    """
    names = list(encoders)
    dropped = sorted(set(table["encoder"]) - set(names))
    absent = sorted(set(names) - set(table["encoder"]))
    if dropped:
        print(f"{source}: encoders not in the config, left out: {dropped}")
    if absent:
        print(f"{source}: config encoders without scores (not in the fit): {absent}")
    kept = table[table["encoder"].isin(names)].reset_index(drop=True)
    if kept.empty:
        raise TableError(f"{source}: no row names an encoder of the config ({names})")
    return kept


def score_scale(benchmark: str, table_format: str, scores: Iterable[float] = ()) -> Scale | None:
    """The units of ``benchmark``'s scores in a table of ``table_format``: the benchmark's
    record (vislaw.eval.tasks.BENCHMARKS), with accuracies in percent in the paper's table
    (it prints 64.26, lmms-eval records 0.6426). None when unknown, or when ``scores`` leave
    the range (a table in other units than the record says): the figures then show the
    numbers as they are and clip nothing."""
    from vislaw.eval.tasks import ACCURACY_PERCENT, BENCHMARKS

    bench = BENCHMARKS.get(benchmark)
    scale = bench.scale if bench is not None else None
    if scale is not None and table_format == "paper_v1" and scale.accuracy:
        scale = ACCURACY_PERCENT
    values = np.asarray(list(scores), dtype=float)
    if (
        scale is not None
        and len(values)
        and (values.min() < scale.low or values.max() > scale.high)
    ):
        print(
            f"benchmark {benchmark}: scores {values.min():.4g}..{values.max():.4g} outside its "
            f"recorded range [{scale.low:g}, {scale.high:g}]; figures show them unscaled"
        )
        return None
    return scale

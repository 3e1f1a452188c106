"""Read lmms-eval results JSON files and gather them into the tidy benchmark table.

lmms-eval writes ``<date>_results.json`` with ``results[<task>]["<metric>,<filter>"]`` (plus
``"<metric>_stderr,<filter>"`` and an ``alias``); tasks without a filter pipeline use the filter
``none``. The evaluate rule stores one such file per encoder and benchmark under a fixed name;
:func:`benchmark_rows` reads the benchmark's metrics from it and :func:`write_table` writes
``scores/benchmarks.csv`` with the columns ``encoder, benchmark, task, metric, score, note``
(``score`` NaN and ``note`` the reason for a benchmark that was not scored).

Light (json and csv only): the table rule needs no torch and no lmms-eval.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from vislaw.eval.tasks import Benchmark, get_benchmark
from vislaw.io.atomic import csv_text, write_csv

DEFAULT_FILTER = "none"


class ResultsError(ValueError):
    """A results file that does not hold what the table needs; the message names the file."""


@dataclass(frozen=True)
class ScoreRow:
    """One score; ``score`` is NaN and ``note`` says why when the benchmark was not scored
    (e.g. its GPT judge was unavailable): never a 0 standing in for a failure."""

    encoder: str
    benchmark: str
    task: str
    metric: str
    score: float
    note: str = ""

    @property
    def scored(self) -> bool:
        return math.isfinite(self.score)


COLUMNS = tuple(f.name for f in fields(ScoreRow))
OLD_COLUMNS = COLUMNS[:-1]  # tables written before the note column


def read_results(path: str | Path) -> dict[str, Any]:
    """A results JSON as lmms-eval wrote it (checked to have a ``results`` mapping)."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"{path}: results file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ResultsError(f"{path}: no 'results' mapping; not an lmms-eval results file")
    return data


def task_metrics(
    results: Mapping[str, Any], task: str, filter_name: str = DEFAULT_FILTER
) -> dict[str, Any]:
    """``{metric: value}`` of one task under one filter; stderr entries and the alias dropped."""
    per_task = results["results"]
    if task not in per_task:
        raise KeyError(f"task {task!r} not in results (tasks: {sorted(per_task)})")
    out = {}
    for key, value in per_task[task].items():
        metric, sep, filt = key.rpartition(",")
        if sep and filt == filter_name and "_stderr" not in metric:
            out[metric] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def not_scored_reason(data: Mapping[str, Any]) -> str | None:
    """The reason the runner wrote instead of scores (vislaw.eval.task_loop), if any."""
    notes = data.get("vislaw")
    return notes.get("not_scored") if isinstance(notes, Mapping) else None


def _limit(data: Mapping[str, Any]) -> Any:
    notes = data.get("vislaw") if isinstance(data.get("vislaw"), Mapping) else {}
    return notes.get("limit") or (data.get("config") or {}).get("limit")


def benchmark_rows(
    encoder: str, bench: Benchmark, path: str | Path, filter_name: str = DEFAULT_FILTER
) -> list[ScoreRow]:
    """Rows of the table for one encoder and benchmark, read from its results file.

    A benchmark written as not scored gives NaN rows carrying the reason. A run limited by
    ``eval.limit`` may lack an extra metric (MME's cognition score when the first documents
    are all perception questions): that row is left out; the primary metric is required.
    """
    data = read_results(path)
    reason = not_scored_reason(data)
    if reason is not None:
        return [
            ScoreRow(encoder, bench.name, bench.task, m, math.nan, reason) for m in bench.metrics
        ]
    try:
        metrics = task_metrics(data, bench.task, filter_name)
    except KeyError as err:
        raise ResultsError(f"{path}: {err.args[0]}") from None
    rows = []
    for metric in bench.metrics:
        if metric not in metrics and metric != bench.metric and _limit(data):
            continue  # a limited run's documents did not cover this metric
        if metric not in metrics:
            raise ResultsError(
                f"{path}: task {bench.task!r} has no metric {metric!r} under filter "
                f"{filter_name!r} (found: {sorted(metrics)})"
            )
        score = _number(metrics[metric])
        if score is None:
            raise ResultsError(
                f"{path}: {bench.task} {metric} is {metrics[metric]!r}, not a finite number"
            )
        rows.append(ScoreRow(encoder, bench.name, bench.task, metric, score))
    return rows


def collect_rows(entries: Iterable[tuple[str, Benchmark, str | Path]]) -> list[ScoreRow]:
    """Rows for ``(encoder, benchmark, results path)`` entries, in the order given."""
    rows: list[ScoreRow] = []
    for encoder, bench, path in entries:
        rows += benchmark_rows(encoder, bench, path)
    return rows


def _csv_rows(rows: Sequence[ScoreRow]) -> list[dict[str, Any]]:
    return [dict(zip(COLUMNS, [*astuple(r)[:4], repr(r.score), r.note], strict=True)) for r in rows]


def table_text(rows: Sequence[ScoreRow]) -> str:
    return csv_text(_csv_rows(rows), COLUMNS)


def write_table(rows: Sequence[ScoreRow], path: str | Path) -> Path:
    """``benchmarks.csv`` (atomic): one row per encoder, benchmark and metric."""
    return write_csv(path, _csv_rows(rows), COLUMNS)


def run_benchmarks_table(
    entries: Iterable[tuple[str, Benchmark, str | Path]], out_path: str | Path | None
) -> list[ScoreRow]:
    """Step ``benchmarks_table``: the score rows of ``(encoder, benchmark, results JSON)``
    entries into ``out_path`` (``None``: printed as CSV); reports the not-scored rows."""
    rows = collect_rows(entries)
    if out_path is None:
        print(table_text(rows), end="")
        return rows
    write_table(rows, out_path)
    print(f"{len(rows)} rows -> {out_path}")
    for row in rows:
        if not row.scored:  # NaN with the reason; the law input leaves these out
            print(f"not scored: {row.encoder} {row.benchmark} {row.metric}: {row.note}")
    return rows


def read_table(path: str | Path) -> list[ScoreRow]:
    """The rows of a ``benchmarks.csv`` (for the law, the report and tests); not-scored rows
    come back with a NaN score and their note."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) not in (COLUMNS, OLD_COLUMNS):
            raise ResultsError(f"{path}: columns {reader.fieldnames}, expected {list(COLUMNS)}")
        return [
            ScoreRow(
                r["encoder"],
                r["benchmark"],
                r["task"],
                r["metric"],
                float(r["score"]),
                r.get("note") or "",
            )
            for r in reader
        ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.results",
        description="Print the score rows of lmms-eval results files as CSV.",
    )
    parser.add_argument(
        "entries",
        nargs="+",
        metavar="ENCODER:BENCHMARK:PATH",
        help="e.g. clip224:synth_color:results/demo/eval/clip224/synth_color.json",
    )
    parser.add_argument("--out", help="write the CSV here instead of printing it")
    args = parser.parse_args(argv)
    entries = []
    for entry in args.entries:
        parts = entry.split(":", 2)
        if len(parts) != 3:
            parser.error(f"{entry!r} is not ENCODER:BENCHMARK:PATH")
        entries.append((parts[0], get_benchmark(parts[1]), parts[2]))
    run_benchmarks_table(entries, args.out)


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

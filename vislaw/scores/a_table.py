"""The A-score table: ``encoder, benchmark, a_cosine, a_cosine_<ref>..., a_loglik``.

``a_cosine_<ref>`` is the v1 alignment against each reference encoder's embeddings of the same
images (docs/a_score.md: CLIP@224 and CLIP@336), ``a_cosine`` their mean (the A the paper's law used);
``a_loglik`` is the v3 caption log-likelihood, one value per encoder repeated on each benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vislaw.io.atomic import write_csv
from vislaw.scores.alignment import alignment_score
from vislaw.scores.settings import AScoreSettings


def a_score_rows(
    encoders: Sequence[str],
    benchmarks: Sequence[str],
    embeddings: Callable[[str, str], str | Path],
    loglik: Mapping[str, float],
    references: Mapping[str, str],
    *,
    batch_size: int = 16,
) -> list[dict[str, float | str]]:
    """One row per encoder x benchmark; ``embeddings(benchmark, encoder)`` names the HDF5 file."""
    rows = []
    for encoder in encoders:
        for bench in benchmarks:
            row: dict[str, float | str] = {"encoder": encoder, "benchmark": bench}
            per_ref = [
                alignment_score(
                    embeddings(bench, encoder), embeddings(bench, ref), batch_size=batch_size
                )
                for ref in references.values()
            ]
            row["a_cosine"] = sum(per_ref) / len(per_ref)
            for suffix, value in zip(references, per_ref, strict=True):
                row[f"a_cosine_{suffix}"] = value
            row["a_loglik"] = loglik[encoder]
            rows.append(row)
    return rows


def read_logliks(paths: Sequence[str | Path]) -> dict[str, float]:
    """encoder -> ``a_loglik`` from the embeddings jobs' JSON records."""
    loglik: dict[str, float] = {}
    for path in paths:
        record = json.loads(Path(path).read_text())
        loglik[record["encoder"]] = record["a_loglik"]
    return loglik


def run_a_scores(
    a_score: AScoreSettings,
    encoders: Sequence[str],
    benchmarks: Sequence[str],
    embeddings: Callable[[str, str], str | Path],
    loglik_paths: Sequence[str | Path],
    out: str | Path,
) -> list[dict[str, float | str]]:
    """Step ``a_scores``: the table from the cached embeddings (``embeddings(benchmark,
    encoder)`` names each file) and the log-likelihood records, written to ``out`` (CSV)."""
    rows = a_score_rows(
        encoders, benchmarks, embeddings, read_logliks(loglik_paths), a_score.references
    )
    write_csv(out, rows)
    return rows

"""The A-score table: ``encoder, benchmark, a_cosine, a_cosine_<ref>..., a_loglik``.

``a_cosine_<ref>`` is the v1 alignment against each reference encoder's embeddings of the same
images (docs/a_score.md: CLIP@224 and CLIP@336), ``a_cosine`` their mean (the A the paper's law used);
``a_loglik`` is the v3 caption log-likelihood, one value per encoder repeated on each benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from vislaw.io.atomic import write_csv
from vislaw.io.hdf5 import open_features
from vislaw.io.provenance import InputError, check_record, read_json
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
    """encoder -> ``a_loglik`` from the embeddings jobs' JSON records; a record that is not
    JSON, lacks a field, or names an encoder another record already named (a copied file) is
    refused naming the file."""
    loglik: dict[str, float] = {}
    source: dict[str, str | Path] = {}
    for path in paths:
        record = read_json(path)
        try:
            encoder, value = record["encoder"], float(record["a_loglik"])
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, f"not an A log-likelihood record: {err!r}") from err
        if encoder in source:
            raise InputError(path, f"records encoder {encoder!r}, as {source[encoder]} does")
        loglik[encoder], source[encoder] = value, path
    return loglik


def check_embedding_files(
    encoders: Sequence[str],
    benchmarks: Sequence[str],
    embeddings: Callable[[str, str], str | Path],
) -> None:
    """Each embedding file must record the encoder and benchmark its name stands for (the
    embeddings job writes both into its meta), so a file copied over another's is refused
    naming the file rather than scored as that encoder's."""
    for encoder in encoders:
        for bench in benchmarks:
            path = embeddings(bench, encoder)
            with open_features(path) as handle:
                meta = dict(handle.meta)
            recorded = {k: meta.get(k) for k in ("encoder", "benchmark")}
            check_record(path, recorded, {"encoder": encoder, "benchmark": bench}, "embeddings")


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
    used = list(dict.fromkeys([*encoders, *a_score.references.values()]))
    check_embedding_files(used, benchmarks, embeddings)
    rows = a_score_rows(
        encoders, benchmarks, embeddings, read_logliks(loglik_paths), a_score.references
    )
    write_csv(out, rows)
    return rows

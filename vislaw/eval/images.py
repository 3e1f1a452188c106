"""The seeded sample of a benchmark's images that the A score embeds (design.md: 100 images).

The sample is drawn once per benchmark and written to a manifest, so every encoder embeds the
same images. Local benchmark sets (the demo) are read from disk without importing lmms-eval;
the paper's benchmarks come from lmms-eval's own task documents (``doc_to_visual``), saved as
PNG beside the manifest so the embedding jobs (other envs) need no lmms-eval.

CLI: ``python -m vislaw.eval.images --benchmark synth_color --set-dir DIR --out M.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vislaw.eval.local_tasks import read_benchmark_set
from vislaw.eval.tasks import Benchmark
from vislaw.io.atomic import write_text_atomic


def benchmark_rng(seed: int, name: str) -> np.random.Generator:
    """A stream per (seed, benchmark) that does not change when other benchmarks are added."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _choose(n_total: int, n: int, seed: int, name: str) -> list[int]:
    """Sorted indices of a seeded sample of ``min(n, n_total)`` items."""
    picked = benchmark_rng(seed, name).choice(n_total, size=min(n, n_total), replace=False)
    return sorted(int(i) for i in picked)


def sample_local_set(set_dir: str | Path, name: str, n: int, seed: int) -> list[dict[str, str]]:
    """``[{"id", "path"}]`` of distinct images of a local benchmark set (questions.jsonl)."""
    images = sorted({row["image"] for row in read_benchmark_set(set_dir)})  # relative to set_dir
    chosen = _choose(len(images), n, seed, name)
    return [{"id": images[i], "path": str(Path(set_dir) / images[i])} for i in chosen]


def sample_lmms_task(
    bench: Benchmark, n: int, seed: int, out_dir: str | Path, include_path: str | None = None
) -> list[dict[str, str]]:
    """Sample documents of an lmms-eval task and save their first image as PNG in ``out_dir``."""
    from lmms_eval.tasks import get_task_dict

    from vislaw.eval.runner import task_manager

    manager = task_manager([bench.task], include_path)  # a task copy wins over the installed
    if bench.task not in manager.all_tasks:
        raise ValueError(f"benchmark {bench.name}: lmms-eval task {bench.task!r} not found")
    task = get_task_dict([bench.task], manager)[bench.task]
    docs = task.test_docs() if task.has_test_docs() else task.validation_docs()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for index in _choose(len(docs), n, seed, bench.name):
        visuals = [v for v in task.doc_to_visual(docs[index]) if hasattr(v, "convert")]
        if not visuals:
            continue  # a text-only document has nothing to embed
        path = out_dir / f"{index:06d}.png"
        visuals[0].convert("RGB").save(path)
        items.append({"id": f"{index:06d}", "path": str(path)})
    if not items:
        raise ValueError(f"benchmark {bench.name}: the sampled documents hold no images")
    return items


def write_sample(
    path: str | Path, benchmark: str, seed: int, items: Sequence[dict[str, str]]
) -> None:
    payload: dict[str, Any] = {"benchmark": benchmark, "seed": seed, "items": list(items)}
    write_text_atomic(path, json.dumps(payload, indent=1))


def read_sample(path: str | Path) -> dict[str, Any]:
    data = json.loads(Path(path).read_text())
    if not data.get("items"):
        raise ValueError(f"{path}: no images in the sample")
    return data


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.eval.tasks import get_benchmark

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.images",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--out", required=True, help="manifest JSON to write")
    parser.add_argument("--set-dir", help="local benchmark set folder (local benchmarks)")
    parser.add_argument("--include-path", help="lmms-eval --include_path for task folders")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    bench = get_benchmark(args.benchmark)
    if bench.local and args.set_dir:
        items = sample_local_set(args.set_dir, bench.name, args.n, args.seed)
    else:
        items = sample_lmms_task(
            bench, args.n, args.seed, Path(args.out).with_suffix(""), args.include_path
        )
    write_sample(args.out, bench.name, args.seed, items)


if __name__ == "__main__":
    main()

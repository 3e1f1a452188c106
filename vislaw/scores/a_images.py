"""The seeded sample of a benchmark's images that the A score embeds (docs/a_score.md: 100 images).

The sample is drawn once per benchmark and written to a manifest, so every encoder embeds the
same images. Local benchmark sets (the demo) are read from disk without importing lmms-eval;
the paper's benchmarks come from lmms-eval's own task documents (``doc_to_visual``), saved as
PNG beside the manifest so the embedding jobs (other envs) need no lmms-eval.

CLI: ``python -m vislaw.scores.a_images --benchmark synth_color --set-dir DIR --out M.json``.
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
from vislaw.scores.settings import AScoreSettings


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
    bench: Benchmark,
    n: int,
    seed: int,
    out_dir: str | Path,
    include_path: str | None = None,
    manager: Any = None,
) -> list[dict[str, str]]:
    """Sample documents of an lmms-eval task and save their first image as PNG in ``out_dir``.
    ``manager``: a task index already built (indexing lmms-eval's ~2,000 task files takes
    longer than sampling, so run_a_images builds one for all benchmarks)."""
    from lmms_eval.tasks import get_task_dict

    from vislaw.eval.lmms_bridge import task_manager

    if manager is None:  # a task copy wins over the installed
        manager = task_manager([bench.task], include_path)
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


def sample_benchmark(
    bench: Benchmark,
    n: int,
    seed: int,
    out: str | Path,
    *,
    set_dir: str | Path | None = None,
    include_path: str | None = None,
    manager: Any = None,
) -> list[dict[str, str]]:
    """Sample one benchmark and write its manifest ``out``: a local set from ``set_dir``, an
    lmms-eval task's documents otherwise (their images saved beside ``out``)."""
    if bench.local and set_dir is not None:
        items = sample_local_set(set_dir, bench.name, n, seed)
    else:
        items = sample_lmms_task(bench, n, seed, Path(out).with_suffix(""), include_path, manager)
    write_sample(out, bench.name, seed, items)
    return items


def run_a_images(
    a_score: AScoreSettings,
    seed: int,
    benchmarks: Sequence[Benchmark],
    sets_root: str | Path,
    outputs: Sequence[str | Path],
) -> None:
    """Step ``a_images``: the seeded sample of every benchmark (local sets under
    ``sets_root``), one manifest per benchmark, in the order of ``outputs``. One lmms-eval task
    index serves every benchmark (one per benchmark took minutes on config.yaml's eight)."""
    manager = None
    tasks = [b.task for b in benchmarks if not b.local]
    if tasks:
        from vislaw.eval.lmms_bridge import task_manager

        manager = task_manager(tasks)
    for bench, out in zip(benchmarks, outputs, strict=True):
        set_dir = Path(sets_root) / bench.name if bench.local else None
        items = sample_benchmark(
            bench, a_score.n_images, seed, out, set_dir=set_dir, manager=manager
        )
        print(f"{bench.name}: {len(items)} images -> {out}")


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.eval.tasks import get_benchmark

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.scores.a_images",
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
    sample_benchmark(
        get_benchmark(args.benchmark),
        args.n,
        args.seed,
        args.out,
        set_dir=args.set_dir,
        include_path=args.include_path,
    )


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

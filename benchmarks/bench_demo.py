"""The demo's wall time and per-job overhead, without and with warm start, in one run.

Runs the README's demo DAG (config/demo.yaml, profiles/local) twice into temporary folders:
*before*: ``warm_start: false``, every job a fresh interpreter that imports its stack;
*after*: ``warm_start: true``, every job a fork of one process that imported it (vislaw.warm).
Same jobs, same data, same cores. Prints each run's wall time (Snakemake start to finish, DAG
building included), the summed job seconds, and the median per-job overhead, then the ratios.

Per-job overhead = the job's wall time (its Snakemake ``benchmark:`` file) minus the seconds
its step took once started (``vislaw.jobs.job_log`` logs them) in the warm run, where the
imports are already done: what the job costs beyond its own work.

    python benchmarks/bench_demo.py [--cores 2] [--keep DIR] [--only before|after]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vislaw.jobs import STEP_SECONDS  # noqa: E402 - the repository's vislaw, not an installed one

MODES = {"before": False, "after": True}


def run_demo(folder: Path, warm_start: bool, cores: int) -> float:
    """The demo into ``folder``; its wall time in seconds."""
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["results_dir"] = str(folder / "results")
    config["data"]["root"] = str(folder / "results" / "demo" / "data")
    config["warm_start"] = warm_start
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [str(Path(sys.executable).parent / "snakemake"), "--cores", str(cores)]
    command += ["--configfile", str(path), "--profile", "profiles/local"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"demo failed ({folder}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def job_seconds(run_dir: Path) -> dict[str, float]:
    """{job: wall seconds} from the Snakemake benchmark files (one per job)."""
    bench = run_dir / "benchmarks"
    out = {}
    for tsv in sorted(bench.rglob("*.tsv")):
        lines = tsv.read_text().splitlines()
        out[str(tsv.relative_to(bench).with_suffix(""))] = float(lines[-1].split("\t")[0])
    return out


def step_seconds(run_dir: Path) -> dict[str, float]:
    """{job: seconds inside its step}, from the last STEP_SECONDS line of each job log."""
    logs = run_dir / "logs"
    out = {}
    for log in sorted(logs.rglob("*.log")):
        lines = [
            x for x in log.read_text(errors="replace").splitlines() if x.startswith(STEP_SECONDS)
        ]
        if lines:
            out[str(log.relative_to(logs).with_suffix(""))] = float(lines[-1].split()[-1])
    return out


def report(results: dict[str, dict], work: dict[str, float]) -> None:
    print(
        f"{'':8} {'wall s':>8} {'jobs':>5} {'job s':>8} {'median job s':>13} {'median overhead s':>18}"
    )
    for mode, r in results.items():
        jobs = r["jobs"]
        overheads = [jobs[j] - work[j] for j in jobs if j in work]
        print(
            f"{mode:8} {r['wall']:8.1f} {len(jobs):5d} {sum(jobs.values()):8.1f} "
            f"{statistics.median(jobs.values()):13.2f} {statistics.median(overheads):18.2f}"
        )
    if set(results) == set(MODES):
        before, after = results["before"], results["after"]
        print(f"wall time ratio before/after: {before['wall'] / after['wall']:.2f}x")
        job_ratio = sum(before["jobs"].values()) / sum(after["jobs"].values())
        print(f"summed job seconds ratio: {job_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep both runs' results under this folder")
    parser.add_argument("--only", choices=sorted(MODES), help="run one of the two")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    base = args.keep or Path(tempfile.mkdtemp(prefix="vislaw-bench-demo-"))
    results, work = {}, {}
    try:
        # after (warm) first: its step seconds define the work both runs subtract
        for mode in [m for m in ("after", "before") if args.only in (None, m)]:
            folder = base / mode
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            wall = run_demo(folder, MODES[mode], args.cores)
            run_dir = folder / "results" / "demo"
            results[mode] = {"wall": wall, "jobs": job_seconds(run_dir)}
            work = work or step_seconds(run_dir)
            print(f"[{mode}] demo done in {wall:.1f} s", flush=True)
        report({m: results[m] for m in MODES if m in results}, work)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

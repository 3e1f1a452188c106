"""Speed of the finetuning-strategy simulation on the paper's released table.

Times, in the same run and process, today's law simulation (the paper's region sampler and
the random order as ``vislaw.law.report.policy_tables`` ran them before the region sampler's
cell cache: ``cache_cells=False``) and the full strategy evaluation
(``vislaw.law.simulate.strategy_table``: every strategy under every protocol, the randomised
ones at 1000 trials), and prints the ratio and the held_out_benchmark rows. Target: the full
evaluation within a minute on 2 cores.

    python benchmarks/bench_policy.py [--trials 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from vislaw.law.fit import benchmark_rng, fit_all
from vislaw.law.region_sampler import simulate
from vislaw.law.simulate import strategy_table
from vislaw.law.tables import read_scores_table

ROOT = Path(__file__).resolve().parents[1]


def best_of(repeats: int, func) -> tuple[float, object]:
    """Fastest wall time of ``repeats`` calls (the machine is shared) and the last result."""
    times, result = [], None
    for _ in range(repeats):
        tic = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - tic)
    return min(times), result


def today(fits, trials: int) -> None:
    """The law's simulation as it was: region sampler + random order, no cell cache."""
    for name, fit in fits.items():
        for strategy in ("ac", "random"):
            rng = benchmark_rng(0, name, f"policy/{strategy}")
            simulate(fit.a, fit.c, fit.y, trials, 3, rng, strategy, cache_cells=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    table = read_scores_table(ROOT / "resources/paper/ablations_t.csv", "paper_v1")
    fits = fit_all(table, seed=0, resamples=0, random_draws=1)
    before, _ = best_of(args.repeats, lambda: today(fits, args.trials))
    full, result = best_of(args.repeats, lambda: strategy_table(table, args.trials, (3, 4), 0))
    print(f"today's simulation (region + random):        {before:.2f} s")
    print(f"every strategy under every protocol:         {full:.2f} s  (target < 60 s)")
    print(f"ratio all strategies / today's two: {full / before:.2f}")
    strict = result[result["protocol"] == "held_out_benchmark"]
    print(strict.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()

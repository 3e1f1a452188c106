"""Every finetuning strategy simulated on a fully measured table: ``policy_strategies.csv``.

A trial finetunes encoders in the strategy's order and stops once the benchmark's truly best
encoder is among the top-k of the strategy's ranking; the count of finetunes is recorded. The
paper's region sampler and the random order (both ranked by the plain least-squares law) are
random, so their trials differ; the Bayesian strategies are deterministic given the measured
scores, so their 1000 trials coincide and their per-benchmark Recall is 0 or 1.

Honesty rules:
- a benchmark's learned prior comes from the *other* benchmarks' law coefficients;
- every hyper-parameter (the :data:`GRID`) is chosen per benchmark on the other benchmarks
  only (leave-one-benchmark-out), with priors that exclude the benchmark being scored too;
- ``joint_bayes_ucb`` picks for all benchmarks at once (mean acquisition): one finetune gives
  every benchmark's score, which is how the policy mode uses it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vislaw.law.fit import BenchmarkFit, benchmark_rng
from vislaw.law.policy import recall_curve, simulate, top_k
from vislaw.law.strategies import (
    BAYES_STRATEGIES,
    PRIOR_STRATEGIES,
    BayesParams,
    BenchmarkState,
    joint_step,
    law_coefficients,
    make_prior,
)

SIMULATED = ("random", "region", "ucb", "bayes_ucb", "bayes_ei", "joint_bayes_ucb")
# Hyper-parameter grid searched leave-one-benchmark-out (ridge only matters for ucb, shrink
# only for the learned prior, beta not for bayes_ei).
GRID = {
    "noise": (0.003, 0.01, 0.03),
    "beta": (0.0, 0.5, 1.0),
    "ridge": (0.1, 1.0),
    "shrink": (0.1, 1.0),
}


def grid_for(strategy: str) -> list[BayesParams]:
    """The grid points that change ``strategy``'s behaviour."""
    base = "bayes_ucb" if strategy == "joint_bayes_ucb" else strategy
    keys = ["noise"]
    keys += ["beta"] if base != "bayes_ei" else []
    keys += ["ridge"] if base == "ucb" else ["shrink"]
    return [
        BayesParams(**dict(zip(keys, values, strict=True)))
        for values in itertools.product(*(GRID[key] for key in keys))
    ]


@dataclass(frozen=True)
class Problem:
    """One fully measured benchmark: normalised A, C, score and its law coefficients."""

    name: str
    a: np.ndarray
    c: np.ndarray
    y: np.ndarray
    coef: np.ndarray

    @classmethod
    def from_fit(cls, name: str, fit: BenchmarkFit) -> Problem:
        return cls(name, fit.a, fit.c, fit.y, law_coefficients(fit.a, fit.c, fit.y))

    @property
    def best(self) -> set[int]:
        return set(np.flatnonzero(self.y == self.y.max()).tolist())


def bayes_needed(
    strategy: str,
    problems: Sequence[Problem],
    priors: Sequence[np.ndarray | None],
    params: BayesParams,
    k: int,
) -> np.ndarray:
    """Finetunes each problem needs when the problems share one pick sequence."""
    states = [
        BenchmarkState(p.a, p.c, p.y, make_prior(strategy, params, coef))
        for p, coef in zip(problems, priors, strict=True)
    ]
    n = len(problems[0].y)
    needed = np.full(len(problems), n)
    known = np.zeros(n, dtype=bool)
    pick, _, _ = joint_step(strategy, states, known, params)
    for count in range(1, n + 1):
        known[pick] = True
        # one posterior per step: it ranks this step and picks the next
        pick, means, _ = joint_step(strategy, states, known, params)
        for j, (problem, mean) in enumerate(zip(problems, means, strict=True)):
            if needed[j] == n and problem.best & set(top_k(mean, k).tolist()):
                needed[j] = count
        if (needed < n).all():
            break
    return needed


def _prior_rows(problems: Sequence[Problem], exclude: set[str]) -> np.ndarray:
    return np.array([p.coef for p in problems if p.name not in exclude])


def _objective(needed: np.ndarray, budget: int) -> float:
    """Higher is better: Recall at the largest budget, then fewer finetunes."""
    return float((needed <= budget).mean() - 0.01 * needed.mean())


def _needed_for(
    strategy: str,
    problems: Sequence[Problem],
    params: BayesParams,
    k: int,
    held: set[str],
    everything: Sequence[Problem],
    memo: dict,
) -> np.ndarray:
    """Each problem's finetunes; a problem's prior comes from ``everything`` but itself and
    ``held``. Single-benchmark runs are memoised: LOBO asks for the same ones many times."""
    base = "bayes_ucb" if strategy == "joint_bayes_ucb" else strategy
    uses_prior = base in PRIOR_STRATEGIES

    def prior_of(p: Problem) -> np.ndarray | None:
        return _prior_rows(everything, held | {p.name}) if uses_prior else None

    if strategy == "joint_bayes_ucb":
        key = (tuple(p.name for p in problems), params, frozenset(held))
        if key not in memo:
            memo[key] = bayes_needed(base, problems, [prior_of(p) for p in problems], params, k)
        return memo[key]
    out = []
    for p in problems:
        key = (p.name, params, frozenset(held | {p.name}) if uses_prior else None)
        if key not in memo:
            memo[key] = bayes_needed(base, [p], [prior_of(p)], params, k)[0]
        out.append(memo[key])
    return np.array(out)


def lobo_needed(
    strategy: str, problems: Sequence[Problem], k: int, budget: int
) -> tuple[np.ndarray, list[BayesParams]]:
    """Finetunes per benchmark, each with hyper-parameters chosen on the other benchmarks."""
    grid = grid_for(strategy)
    needed, chosen, memo = np.empty(len(problems), dtype=np.int64), [], {}
    for j, problem in enumerate(problems):
        held = {problem.name}
        others = [p for p in problems if p.name != problem.name]
        scores = [
            _objective(_needed_for(strategy, others, params, k, held, problems, memo), budget)
            for params in grid
        ]
        params = grid[int(np.argmax(scores))]
        chosen.append(params)
        needed[j] = _needed_for(strategy, problems, params, k, set(), problems, memo)[j]
    return needed, chosen


def strategy_table(
    fits: dict[str, BenchmarkFit],
    trials: int,
    k: int,
    budgets: Sequence[int],
    seed: int,
    strategies: Sequence[str] = SIMULATED,
) -> tuple[pd.DataFrame, dict[str, list[BayesParams]]]:
    """``policy_strategies.csv`` (strategy, benchmark, mean_finetunes, recall_at_k_budget_b,
    plus a ``mean`` row per strategy) and the hyper-parameters chosen per benchmark."""
    problems = [Problem.from_fit(name, fit) for name, fit in fits.items()]
    if len(problems) < 3 and any(
        s in PRIOR_STRATEGIES or s.startswith("joint") for s in strategies
    ):
        raise ValueError(
            f"law.strategies: the learned-prior strategies need at least 3 benchmarks (a prior "
            f"from the others, hyper-parameters chosen on the others), got {len(problems)}"
        )
    n = len(problems[0].y)
    rows, chosen = [], {}
    for strategy in strategies:
        if strategy in ("random", "region"):
            needed = [
                simulate(
                    p.a,
                    p.c,
                    p.y,
                    trials,
                    k,
                    benchmark_rng(seed, p.name, f"policy/{strategy}"),
                    "ac" if strategy == "region" else "random",
                )
                for p in problems
            ]
        elif strategy in BAYES_STRATEGIES or strategy == "joint_bayes_ucb":
            counts, chosen[strategy] = lobo_needed(strategy, problems, k, max(budgets))
            needed = [np.full(trials, count) for count in counts]
        else:
            raise ValueError(f"unknown strategy '{strategy}'; known: {SIMULATED}")
        for problem, values in zip(problems, needed, strict=True):
            recall = recall_curve(values, n)
            row = {"strategy": strategy, "benchmark": problem.name}
            row["mean_finetunes"] = float(np.mean(values))
            for budget in budgets:
                row[f"recall_at_{k}_budget_{budget}"] = float(recall[budget - 1])
            rows.append(row)
    table = pd.DataFrame(rows)
    means = table.groupby("strategy", sort=False).mean(numeric_only=True).reset_index()
    means.insert(1, "benchmark", "mean")
    return pd.concat([table, means], ignore_index=True), chosen

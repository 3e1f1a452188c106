"""How much a user gains from each finetuning strategy: ``policy_strategies.csv``.

Every strategy is run as the policy mode runs it
(:func:`vislaw.law.policy_mode.decide.pick_next` with the schema's ``policy`` defaults): one pick
sequence serves all benchmarks, and each pick reads only the scores of the encoders already
picked. A run is scored on one benchmark at a time, at each budget, by four metrics:

- ``best_finetuned``: the benchmark's truly best encoder is among the finetuned ones (what a
  user can deploy is what they trained);
- ``regret``: the true best score minus the best finetuned score, in the benchmark's own units
  (MME's scale is about 20 times the others', so it weighs most in the mean);
- ``set_recall_at_3``: the share of the true top 3 that was finetuned;
- ``paper_recall_at_3``: **the paper's metric**: the best encoder was in the strategy's
  predicted top 3 (measured scores where finetuned, predictions elsewhere) at some budget up
  to this one, whether finetuned or not.

Protocols (:data:`PROTOCOLS`, one function each, all run by :func:`strategy_table`) say what
the strategy may have learned from; their figure is a mean over units (benchmarks or held-out
encoders) and its standard error is over those units, plus the Monte-Carlo error of the
randomised strategies (``random``, ``region``) and of the noise draws. Deterministic strategies
run once: repeating them adds no information.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from vislaw.law.fit import LAW_MODEL, design_matrix, minmax
from vislaw.law.policy_mode.decide import pick_next
from vislaw.law.policy_mode.state import PolicyState
from vislaw.law.region_sampler import ranking_scores
from vislaw.law.settings import PolicySettings
from vislaw.law.strategies import (
    BAYES_STRATEGIES,
    PRIOR_STRATEGIES,
    TIE_TOLERANCE,
    law_coefficients,
    make_prior,
    posterior,
)

SIMULATED = (
    "random",
    "region",
    "order_a",
    "order_c",
    "order_ac",
    "greedy_law",
    "ucb",
    "bayes_ucb",
    "bayes_ei",
)
RANDOMISED = ("random", "region")
METRICS = ("best_finetuned", "regret", "set_recall_at_3", "paper_recall_at_3")
COLUMNS = (
    "protocol",
    "strategy",
    "budget",
    "best_finetuned",
    "best_finetuned_se",
    "regret",
    "regret_se",
    "set_recall_at_3",
    "paper_recall_at_3",
)
NOISE_LEVELS = {"noisy_5": 0.05, "noisy_10": 0.10}  # sd of the added noise / range of A or C
NOISE_DRAWS = 20
TOP = 3


@dataclass(frozen=True)
class Released:
    """A fully measured table as arrays: raw A (benchmarks x encoders), C, score."""

    benchmarks: list[str]
    encoders: list[str]
    a: np.ndarray
    c: np.ndarray
    y: np.ndarray

    @classmethod
    def from_tidy(cls, table: pd.DataFrame) -> Released:
        """From a tidy table (encoder, benchmark, A, C, score); every cell must be present."""
        benchmarks = list(dict.fromkeys(table["benchmark"]))
        encoders = list(dict.fromkeys(table["encoder"]))
        wide = table.pivot(index="benchmark", columns="encoder")
        missing = wide["score"].isna().to_numpy().nonzero()
        if len(missing[0]) or wide.shape[0] * len(encoders) != len(table):
            raise ValueError(
                "law.strategies: the scores table must score every encoder on every benchmark"
            )
        c = wide["C"].loc[benchmarks[0], encoders].to_numpy(dtype=float)
        pick = (benchmarks, encoders)
        return cls(
            benchmarks,
            encoders,
            wide["A"].loc[pick].to_numpy(dtype=float),
            c,
            wide["score"].loc[pick].to_numpy(dtype=float),
        )

    def prior(self, without_benchmark: int | None, without_encoder: int | None = None):
        """The learned prior's rows: the law's coefficients of every benchmark but
        ``without_benchmark``, fitted on every encoder but ``without_encoder``."""
        keep = np.arange(len(self.encoders)) != (-1 if without_encoder is None else without_encoder)
        return np.array(
            [
                law_coefficients(self.a[j][keep], self.c[keep], self.y[j][keep])
                for j in range(len(self.benchmarks))
                if j != without_benchmark
            ]
        )

    def state(self, known: np.ndarray) -> PolicyState:
        """What the policy sees: every A and C, the scores of the ``known`` encoders only."""
        y = np.where(known, self.y, np.nan)
        return PolicyState(self.encoders, self.benchmarks, self.a, self.c, y)


def run_policy(
    data: Released,
    settings: PolicySettings,
    prior: np.ndarray | None,
    budget: int,
    rng: np.random.Generator,
    start: int | None = None,
) -> list[int]:
    """The mode's first ``budget`` picks, one finetune at a time (``start``: a forced first)."""
    known = np.zeros(len(data.encoders), dtype=bool)
    picks = [] if start is None else [start]
    known[picks] = True
    while len(picks) < budget:
        (pick,) = pick_next(data.state(known), settings, prior, 1, rng)
        picks.append(pick)
        known[pick] = True
    return picks


def _ranking(data: Released, j: int, settings: PolicySettings, prior, known) -> np.ndarray:
    """Benchmark ``j``'s ranking scores: the Bayesian posterior mean for the Bayesian
    strategies (``prior``: their :class:`Prior`), the plain least-squares law for the others
    (NaN: unranked)."""
    a, c = minmax(data.a[j]), minmax(data.c)
    if settings.strategy in BAYES_STRATEGIES:
        phi = design_matrix(LAW_MODEL, a, c)
        mean, _ = posterior(phi, data.y[j], known, prior, settings.params.noise)
        return mean
    return ranking_scores(a, c, data.y[j], known)


def chance_in_top(scores: np.ndarray, best: set[int], top: int = TOP) -> float:
    """The chance that a best encoder is in the ``top`` of ``scores`` (NaN: unranked) when
    exact ties are broken at random: a tie straddling the cut counts by its share of the
    places left, so no encoder wins a tie by its position in the table."""
    valid = ~np.isnan(scores)
    chance = 0.0
    for i in best:
        if not valid[i]:
            continue
        tied = np.abs(scores[valid] - scores[i]) <= TIE_TOLERANCE
        higher = int((scores[valid] > scores[i] + TIE_TOLERANCE).sum())
        chance = max(chance, min(max(top - higher, 0) / int(tied.sum()), 1.0))
    return chance


def score_run(
    data: Released,
    j: int,
    picks: Sequence[int],
    budgets: Sequence[int],
    rank: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """The metrics (budgets x :data:`METRICS`) of one pick sequence on benchmark ``j``;
    ``rank(known)`` gives that benchmark's ranking scores. ``paper_recall_at_3`` is the
    chance that the best was in the top 3 at some step so far, ties redrawn at each step."""
    y = data.y[j]
    best = set(np.flatnonzero(y == y.max()).tolist())
    top = set(np.flatnonzero(y >= np.sort(y)[-TOP]).tolist())
    out = np.empty((len(budgets), len(METRICS)))
    missed, known = 1.0, np.zeros(len(y), dtype=bool)
    for step in range(1, max(budgets) + 1):
        known[picks[step - 1]] = True
        missed *= 1.0 - chance_in_top(rank(known), best)
        if step in budgets:
            done = list(picks[:step])
            out[list(budgets).index(step)] = [
                float(bool(best & set(done))),
                float(y.max() - y[done].max()),
                len(top & set(done)) / len(top),
                1.0 - missed,
            ]
    return out


@dataclass(frozen=True)
class Setup:
    """What every protocol shares: the table, the strategy's settings, budgets, draws."""

    data: Released
    settings: PolicySettings
    budgets: tuple[int, ...]
    trials: int
    seed: int
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def learns(self) -> bool:
        """Whether the strategy uses anything learned from other benchmarks (the prior)."""
        return self.settings.strategy in PRIOR_STRATEGIES

    @property
    def draws(self) -> int:
        return self.trials if self.settings.strategy in RANDOMISED else 1

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])


def _benchmark_runs(setup: Setup, prior_of, start: int | None = None, tag: int = 0) -> np.ndarray:
    """Metrics per benchmark and draw (benchmarks x draws x budgets x metrics): each run's
    prior is ``prior_of(j)`` (None: the strategy learns nothing, one run scores every
    benchmark)."""
    data, settings, budget = setup.data, setup.settings, max(setup.budgets)
    n_b = len(data.benchmarks)
    out = np.empty((n_b, setup.draws, len(setup.budgets), len(METRICS)))
    priors = [prior_of(j) if setup.learns else None for j in range(n_b)]
    bayes_priors = [
        make_prior(settings.strategy, settings.params, p)
        if settings.strategy in BAYES_STRATEGIES
        else None
        for p in priors
    ]
    memo: dict[tuple[int, bytes], np.ndarray] = {}  # a ranking depends on the known set only

    def rank(j: int, known: np.ndarray) -> np.ndarray:
        key = (j, known.tobytes())
        if key not in memo:
            memo[key] = _ranking(data, j, settings, bayes_priors[j], known)
        return memo[key]

    for d in range(setup.draws):
        shared = None
        for j in range(n_b):
            if shared is None or setup.learns:
                rng = setup.rng(tag, d, j + 1 if setup.learns else 0)
                shared = run_policy(data, settings, priors[j], budget, rng, start)
            ranking = lambda known, j=j: rank(j, known)  # noqa: E731
            out[j, d] = score_run(data, j, shared, setup.budgets, ranking)
    return out


def held_out_prior(data: Released, j: int, encoder: int | None = None) -> np.ndarray:
    """The learned prior of a run that scores benchmark ``j``: every benchmark's law but
    ``j``'s (and fitted without ``encoder``'s scores): nothing of ``j`` enters it."""
    return data.prior(j, encoder)


def held_out_benchmark(setup: Setup) -> np.ndarray:
    """Units: benchmarks. Scoring benchmark j, the prior is learned from the other benchmarks
    only and the mode's default hyper-parameters are used (nothing is tuned on j); j's scores
    enter only as the policy finetunes encoders. Returns units x draws x budgets x metrics."""
    if "held_out_benchmark" not in setup.cache:
        runs = _benchmark_runs(setup, lambda j: held_out_prior(setup.data, j))
        setup.cache["held_out_benchmark"] = runs
    return setup.cache["held_out_benchmark"]


def held_out_encoder(setup: Setup) -> np.ndarray:
    """Units: encoders. For held-out encoder e, the prior is learned from the table without
    e's scores (and, as in :func:`held_out_benchmark`, without the scored benchmark); the
    unit's figure is the mean over benchmarks. Strategies that learn nothing give every unit
    the same runs."""
    n_e = len(setup.data.encoders)
    if not setup.learns:
        return np.repeat(held_out_benchmark(setup).mean(axis=0)[None], n_e, axis=0)
    units = [
        _benchmark_runs(setup, lambda j, e=e: held_out_prior(setup.data, j, e), tag=100 + e).mean(
            axis=0
        )
        for e in range(n_e)
    ]
    return np.array(units)


def noisy(setup: Setup, level: float) -> np.ndarray:
    """Units: benchmarks. A and C carry added Gaussian noise of sd ``level`` x their range
    (A per benchmark), the prior is refitted on the noisy table (without the scored
    benchmark); each draw is a fresh noise (and a fresh trial for the randomised ones)."""
    data, out = setup.data, []
    for d in range(NOISE_DRAWS):
        rng = setup.rng(200, d, int(level * 1000))
        span_a = np.ptp(data.a, axis=1, keepdims=True)
        a = data.a + level * span_a * rng.standard_normal(data.a.shape)
        c = data.c + level * np.ptp(data.c) * rng.standard_normal(data.c.shape)
        noisy_setup = replace(
            setup, data=replace(data, a=a, c=c), trials=1, seed=setup.seed + d, cache={}
        )
        out.append(held_out_benchmark(noisy_setup)[:, 0])
    return np.stack(out, axis=1)


def shared_start(setup: Setup) -> np.ndarray:
    """Units: benchmarks. Every strategy's first finetune is the region sampler's: a uniformly
    random encoder (level 0 is one cell). The expectation over that draw is taken exactly, by
    running once from each encoder; the randomised strategies already start that way."""
    if setup.settings.strategy in RANDOMISED:
        return held_out_benchmark(setup)
    starts = [
        _benchmark_runs(setup, lambda j: held_out_prior(setup.data, j), start=s, tag=300 + s)[:, 0]
        for s in range(len(setup.data.encoders))
    ]
    return np.stack(starts, axis=1).mean(axis=1, keepdims=True)


PROTOCOLS: dict[str, Callable[[Setup], np.ndarray]] = {
    "held_out_benchmark": held_out_benchmark,
    "held_out_encoder": held_out_encoder,
    "noisy_5": lambda setup: noisy(setup, NOISE_LEVELS["noisy_5"]),
    "noisy_10": lambda setup: noisy(setup, NOISE_LEVELS["noisy_10"]),
    "shared_start": shared_start,
}


def summarise(runs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over units and draws (budgets x metrics) and its standard error: the spread over
    units (sd / sqrt(units)) plus, for several draws, their Monte-Carlo error."""
    units = runs.mean(axis=1)
    n_units, draws = runs.shape[:2]
    between = units.var(axis=0, ddof=1) / n_units if n_units > 1 else np.zeros(units.shape[1:])
    mc = runs.var(axis=1, ddof=1).mean(axis=0) / (draws * n_units) if draws > 1 else 0.0
    return units.mean(axis=0), np.sqrt(between + mc)


def strategy_table(
    table: pd.DataFrame,
    trials: int,
    budgets: Sequence[int],
    seed: int,
    strategies: Sequence[str] = SIMULATED,
    protocols: Sequence[str] = tuple(PROTOCOLS),
) -> pd.DataFrame:
    """``policy_strategies.csv`` (:data:`COLUMNS`): every protocol, strategy and budget."""
    data = Released.from_tidy(table)
    if len(data.benchmarks) < 3:
        raise ValueError(
            f"law.strategies: needs at least 3 benchmarks (each one's prior is learned from the "
            f"others), got {len(data.benchmarks)}"
        )
    unknown = sorted(set(strategies) - set(SIMULATED)) + sorted(set(protocols) - set(PROTOCOLS))
    if unknown:
        raise ValueError(
            f"law.strategies: unknown {unknown}; known: {SIMULATED}, {tuple(PROTOCOLS)}"
        )
    rows = []
    setups = {
        strategy: Setup(
            data,
            PolicySettings.from_values({"strategy": strategy}, seed=seed),
            tuple(sorted(budgets)),
            trials,
            seed,
        )
        for strategy in strategies
    }
    for protocol in protocols:
        for strategy, setup in setups.items():
            mean, se = summarise(PROTOCOLS[protocol](setup))
            for b, budget in enumerate(setup.budgets):
                row = {"protocol": protocol, "strategy": strategy, "budget": budget}
                for m, metric in enumerate(METRICS):
                    row[metric] = mean[b, m]
                    if f"{metric}_se" in COLUMNS:
                        row[f"{metric}_se"] = se[b, m]
                rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def best_strategy(table: pd.DataFrame, budget: int = 4) -> str:
    """The default ``policy.strategy``: the most ``best_finetuned`` under
    ``held_out_benchmark`` at ``budget``, the lower ``regret`` breaking ties; an exact tie on
    both goes to the simpler strategy (the earlier in :data:`SIMULATED`)."""
    rows = table[(table["protocol"] == "held_out_benchmark") & (table["budget"] == budget)]
    if rows.empty:
        raise ValueError(f"policy_strategies: no held_out_benchmark rows at budget {budget}")
    simpler = {name: i for i, name in enumerate(SIMULATED)}
    key = [
        (-round(row.best_finetuned, 9), round(row.regret, 9), simpler[row.strategy])
        for row in rows.itertuples()
    ]
    return str(rows["strategy"].iloc[min(range(len(key)), key=key.__getitem__)])

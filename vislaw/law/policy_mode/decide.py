"""One policy round's decision: rank the encoders by the law, then pick the next finetunes or stop.

The stop rule and the strategies' pick functions live here, apart from the round's record and
its reports, because the simulation (vislaw.law.simulate) runs :func:`pick_next` itself: what it
reports is what the mode does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from vislaw.law.fit import (
    LAW_MODEL,
    fit_coefficients,
    loo_predictions,
    minmax,
    predict,
    r2_score,
)
from vislaw.law.policy_mode.rounds import RoundDecision, TopEntry
from vislaw.law.policy_mode.state import PolicyState
from vislaw.law.region_sampler import next_region_pick, ranking_scores
from vislaw.law.settings import PolicySettings
from vislaw.law.strategies import (
    PRIOR_STRATEGIES,
    SCORE_FREE,
    BenchmarkState,
    joint_acquisition,
    joint_step,
    make_prior,
    order_with_random_ties,
    score_free_key,
)

if TYPE_CHECKING:
    from vislaw.eval.tasks import Scale


def _weights(settings: PolicySettings, benchmarks: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(settings.weights) - set(benchmarks))
    if unknown:
        raise ValueError(f"policy.weights: not configured benchmarks: {unknown}")
    w = np.array([float(settings.weights.get(b, 1.0)) for b in benchmarks])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("policy.weights: need non-negative weights with a positive sum")
    return w / w.sum()


def _states(state: PolicyState, settings: PolicySettings, prior: np.ndarray | None):
    base = settings.strategy if settings.strategy in ("bayes_ucb", "bayes_ei", "ucb") else "ucb"
    if base in PRIOR_STRATEGIES and prior is None:
        raise ValueError(f"policy.strategy '{base}' needs policy.prior_table")
    weights = _weights(settings, state.benchmarks)
    shared = make_prior(base, settings.params, prior)  # one prior serves every benchmark
    c = minmax(state.c)
    states = [
        BenchmarkState(
            minmax(state.a[j]), c, np.nan_to_num(state.y[j]), shared, weight=float(weights[j])
        )
        for j in range(len(state.benchmarks))
    ]
    return base, states, weights


def posterior_by_benchmark(
    state: PolicyState, settings: PolicySettings, prior: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each benchmark's posterior mean and sd of the normalised score (the strategy's own
    Bayesian law; the ridge prior's for the strategies that use none)."""
    base, states, _ = _states(state, settings, prior)
    _, means, sds = joint_step(base, states, state.known, settings.params)
    return means, sds


def _ranking(state: PolicyState, settings: PolicySettings, means, sds, weights):
    """Weighted normalised score (mean, sd) per encoder; the plain law's for region/random."""
    known = state.known
    if settings.strategy not in ("bayes_ucb", "bayes_ei", "ucb"):
        means = [
            np.nan_to_num(
                ranking_scores(
                    minmax(state.a[j]), minmax(state.c), np.nan_to_num(state.y[j]), known
                )
            )
            for j in range(len(state.benchmarks))
        ]
    mean = np.sum([w * m for w, m in zip(weights, means, strict=True)], axis=0)
    sd = np.sqrt(np.sum([(w * s) ** 2 for w, s in zip(weights, sds, strict=True)], axis=0))
    return mean, sd


def law_fit(state: PolicyState) -> tuple[float, float]:
    """Mean in-sample and mean leave-one-out R² over benchmarks of the least-squares law on
    the finetuned encoders (NaN under 3, LOO NaN until every held-out fit is determined)."""
    known = state.known
    if known.sum() < 3:
        return float("nan"), float("nan")
    r2s, loos = [], []
    for j in range(len(state.benchmarks)):
        a, c, y = minmax(state.a[j][known]), minmax(state.c[known]), minmax(state.y[j][known])
        r2s.append(r2_score(y, predict(LAW_MODEL, fit_coefficients(LAW_MODEL, a, c, y), a, c)))
        held_out = loo_predictions(LAW_MODEL, a, c, y)
        loos.append(r2_score(y, held_out) if np.isfinite(held_out).all() else np.nan)
    mean = [float(np.nanmean(v)) if not np.isnan(v).all() else float("nan") for v in (r2s, loos)]
    return mean[0], mean[1]


def score_bounds(
    state: PolicyState, weights: np.ndarray, scales: Mapping[str, Scale | None] | None
) -> tuple[float, float] | None:
    """The range the weighted normalised score can take: each benchmark's recorded range
    (vislaw.eval.tasks.Scale) in the units of its normalisation (0 = worst, 1 = best measured),
    weighted. None when a benchmark's range is unknown or fewer than 2 encoders differ."""
    known = state.known
    if not scales or known.sum() < 2:
        return None
    low = high = 0.0
    for j, (name, w) in enumerate(zip(state.benchmarks, weights, strict=True)):
        scale = scales.get(name)
        y_low, y_high = np.nanmin(state.y[j][known]), np.nanmax(state.y[j][known])
        if scale is None or y_high <= y_low:
            return None
        low += w * (scale.low - y_low) / (y_high - y_low)
        high += w * (scale.high - y_low) / (y_high - y_low)
    return float(low), float(high)


def _raw_predictions(state: PolicyState, means) -> dict[str, dict[str, float]]:
    """Per benchmark, the posterior means mapped to the measured scale (>= 2 finetuned)."""
    known = state.known
    out: dict[str, dict[str, float]] = {}
    if known.sum() < 2:
        return out
    for j, name in enumerate(state.benchmarks):
        low, high = np.nanmin(state.y[j][known]), np.nanmax(state.y[j][known])
        raw = means[j] * (high - low) + low
        out[name] = {e: float(raw[i]) for i, e in enumerate(state.encoders)}
    return out


def _law_predictions(state: PolicyState, known: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted normalised score by the plain least-squares law (measured where known)."""
    return np.sum(
        [
            w
            * ranking_scores(minmax(state.a[j]), minmax(state.c), np.nan_to_num(state.y[j]), known)
            for j, w in enumerate(weights)
        ],
        axis=0,
    )


def _values(state, settings, base, states, known, weights) -> np.ndarray:
    """The value of finetuning each encoder for the deterministic strategies (higher first;
    -inf where finetuned)."""
    strategy = settings.strategy
    if strategy in SCORE_FREE or (strategy == "greedy_law" and known.sum() < 2):
        # below two measured encoders the plain law has nothing to fit: greedy starts as A + C
        key = "order_ac" if strategy == "greedy_law" else strategy
        value = score_free_key(key, np.array([s.a for s in states]), minmax(state.c))
    elif strategy == "greedy_law":
        value = _law_predictions(state, known, weights)
    else:
        value, _, _ = joint_acquisition(base, states, known, settings.params)
    return np.where(known, -np.inf, value)


def pick_next(
    state: PolicyState,
    settings: PolicySettings,
    prior: np.ndarray | None,
    count: int,
    rnd: np.random.Generator,
) -> list[int]:
    """The next ``count`` encoders ``settings.strategy`` finetunes given ``state``'s measured
    scores (it reads no other score). The simulation (vislaw.law.simulate) calls this too, so
    the figures it reports are those of the mode itself. Deterministic strategies take the
    ``count`` largest values of this round (no scores are imagined for encoders still
    training), exact ties in a random order drawn from ``rnd``."""
    known = state.known.copy()
    count = min(count, int((~known).sum()))
    if settings.strategy not in ("random", "region"):
        base, states, weights = _states(state, settings, prior)
        value = _values(state, settings, base, states, known, weights)
        return [int(i) for i in order_with_random_ties(value, rnd)[:count]]
    picks = []
    points = np.column_stack([np.mean([minmax(a) for a in state.a], axis=0), minmax(state.c)])
    for _ in range(count):
        if settings.strategy == "random":
            pick = int(rnd.choice(np.flatnonzero(~known)))
        else:
            pick = next_region_pick(points, known, rnd).index
        picks.append(pick)
        known[pick] = True
    return picks


def decide_round(
    round_index: int,
    state: PolicyState,
    ordered: Sequence[str],
    settings: PolicySettings,
    prior: np.ndarray | None = None,
    scales: Mapping[str, Scale | None] | None = None,
) -> RoundDecision:
    """One round: the ranking so far, and the next picks or the reason to stop.
    ``scales``: each benchmark's recorded range; the top-k intervals are clipped to what the
    weighted score can reach (``bounds`` in the JSON; None: unknown, not clipped)."""
    known = state.known
    base, states, weights = _states(state, settings, prior)
    _, means, sds = joint_step(base, states, known, settings.params)
    mean, sd = _ranking(state, settings, means, sds, weights)
    order = np.argsort(-mean, kind="stable")
    bounds = score_bounds(state, weights, scales)
    lo, hi = bounds if bounds is not None else (-np.inf, np.inf)
    top = [
        TopEntry(
            encoder=state.encoders[i],
            score=float(np.clip(mean[i], lo, hi)),
            low=float(np.clip(mean[i] - 1.96 * sd[i], lo, hi)),
            high=float(np.clip(mean[i] + 1.96 * sd[i], lo, hi)),
            measured=bool(known[i]),
        )
        for i in order[: settings.k]
    ]
    r2, loo_r2 = law_fit(state)
    stop, why = _stop_reason(state, settings, ordered, mean, sd, order)
    picks: list[str] = []
    if not stop:
        rnd = np.random.default_rng([settings.seed, round_index])
        count = min(settings.per_round, settings.budget - len(ordered))
        picks = [state.encoders[i] for i in pick_next(state, settings, prior, count, rnd)]
        why = _why(settings, picks, mean, sd, state.encoders)
    return RoundDecision(
        round=round_index,
        strategy=settings.strategy,
        finetuned=[e for e, k in zip(state.encoders, known, strict=True) if k],
        ordered=list(ordered),
        picks=picks,
        stop=stop,
        why=why,
        law_r2=r2 if np.isfinite(r2) else None,  # JSON has no NaN
        law_loo_r2=loo_r2 if np.isfinite(loo_r2) else None,
        bounds=bounds,
        n_measured=int(known.sum()),
        top_k=top,
        ranking={e: (float(mean[i]), float(sd[i])) for i, e in enumerate(state.encoders)},
        raw_predictions=_raw_predictions(state, means),
        measured={
            b: {e: float(state.y[j][i]) for i, e in enumerate(state.encoders) if known[i]}
            for j, b in enumerate(state.benchmarks)
        },
    )


def _stop_reason(state, settings, ordered, mean, sd, order) -> tuple[bool, str]:
    known = state.known
    if known.all():
        return True, "every encoder is finetuned"
    if len(ordered) >= settings.budget:
        return True, f"budget of {settings.budget} finetunes spent"
    if known.sum() >= settings.min_finetunes and known[order[0]]:
        best = mean[known].max()
        bound = (mean + settings.stop_z * sd)[~known].max()
        if bound < best:
            return True, (
                f"settled: no unmeasured encoder's upper bound ({bound:.3f}, mean + "
                f"{settings.stop_z:g} sd) reaches the best measured ({best:.3f})"
            )
    return False, ""


def _why(settings, picks, mean, sd, encoders) -> str:
    if settings.strategy == "random":
        return "uniformly random among the unfinetuned encoders"
    if settings.strategy == "region":
        return "region sampler: a random encoder from a random open cell of the (A, C) square"
    if settings.strategy in SCORE_FREE:
        return f"score-free order {settings.strategy}: the highest key not yet finetuned"
    if settings.strategy == "greedy_law":
        return "greedy: the largest weighted prediction of the least-squares law (A + C first)"
    parts = []
    for name in picks:
        i = encoders.index(name)
        parts.append(f"{name}: predicted {mean[i]:.3f} ± {sd[i]:.3f}")
    kind = "expected improvement" if settings.strategy == "bayes_ei" else "upper bound"
    return f"largest {kind} of the weighted score ({'; '.join(parts)})"

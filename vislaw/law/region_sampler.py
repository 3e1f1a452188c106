"""AC policy: choose which encoders to finetune so that the law finds the best one early.

A and C are cheap (no MLLM finetuning); the benchmark score is not. The paper's policy places
the encoders in the unit square by normalised (A, C) and samples by regions: level j splits
the square into 2^j x 2^j cells; at each level every non-empty cell that holds no finetuned
encoder yet gets one finetune (cells in random order, a random encoder in each), then the next,
finer level follows. After each finetune the law is refitted on the finetuned encoders and the
others are predicted. The search stops once the truly best encoder is among the top-k.

Choices made here (the paper leaves them open):
- the ranking uses measured scores for finetuned encoders and law predictions for the rest;
- below ``min_fit`` finetuned encoders there is no law, so the top-k holds only finetuned ones;
- the score is min-max normalised over the finetuned encoders before each fit (the law has six
  terms, so early fits are minimum-norm least squares, whose predictions depend on the scale).

The next pick depends only on which encoders are already finetuned (the current level is the
coarsest one that still has an eligible cell), so the same function drives the simulation and
the ``recommend`` command. The workflow's policy mode (vislaw.law.policy_mode), which decides
rounds of real finetunes, uses it as its ``region`` strategy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from vislaw.law.fit import LAW_MODEL, fit_coefficients, minmax, predict

MAX_LEVEL = 30  # beyond this, cells are narrower than float noise: encoders sit on one point


@dataclass(frozen=True)
class Pick:
    index: int
    level: int  # -1: encoders with identical (A, C) drawn at random once cells stop separating
    cell: tuple[int, int]


def cells_at(points: np.ndarray, level: int) -> np.ndarray:
    """Cell (i, j) of each normalised point at a level; the upper edge belongs to the last cell."""
    side = 2**level
    return np.minimum(np.floor(np.asarray(points, dtype=float) * side), side - 1).astype(np.int64)


def eligible_cells(
    points: np.ndarray, finetuned: np.ndarray
) -> tuple[int, dict[tuple[int, int], list[int]]]:
    """The current level and its eligible cells: non-empty, with no finetuned encoder.

    Returns (-1, {}) when no level up to MAX_LEVEL has one (only coincident points are left).
    """
    finetuned = np.asarray(finetuned, dtype=bool)
    for level in range(MAX_LEVEL + 1):
        cells = [tuple(cell) for cell in cells_at(points, level)]
        taken = {cells[i] for i in np.flatnonzero(finetuned)}
        open_cells: dict[tuple[int, int], list[int]] = {}
        for i in np.flatnonzero(~finetuned):
            if cells[i] not in taken:
                open_cells.setdefault(cells[i], []).append(int(i))
        if open_cells:
            return level, open_cells
    return -1, {}


def _candidates(
    points: np.ndarray, finetuned: np.ndarray
) -> tuple[int, dict[tuple[int, int], list[int]]]:
    """Eligible cells, or (-1, one pseudo-cell of every remaining encoder) past MAX_LEVEL."""
    level, open_cells = eligible_cells(points, finetuned)
    if level < 0:
        open_cells = {(-1, -1): [int(i) for i in np.flatnonzero(~finetuned)]}
    return level, open_cells


def next_region_pick(
    points: np.ndarray,
    finetuned: np.ndarray,
    rng: np.random.Generator,
    cache: dict | None = None,
) -> Pick:
    """The region sampler's next encoder given which are finetuned (a random eligible cell,
    then a random encoder in it). ``cache`` memoises the eligible cells by finetuned set
    (same points only): simulated trials revisit the same sets, and the draws are unchanged."""
    finetuned = np.asarray(finetuned, dtype=bool)
    if finetuned.all():
        raise ValueError("every encoder is already finetuned")
    key = finetuned.tobytes()
    if cache is not None and key in cache:
        level, open_cells, keys = cache[key]
    else:
        level, open_cells = _candidates(points, finetuned)
        keys = sorted(open_cells)
        if cache is not None:
            cache[key] = (level, open_cells, keys)
    cell = keys[int(rng.integers(len(keys)))]
    members = open_cells[cell]
    return Pick(members[int(rng.integers(len(members)))], level, cell)


def region_order(points: np.ndarray, rng: np.random.Generator) -> list[Pick]:
    """A full finetuning order drawn by the region sampler."""
    finetuned = np.zeros(len(points), dtype=bool)
    order = []
    while not finetuned.all():
        pick = next_region_pick(points, finetuned, rng)
        finetuned[pick.index] = True
        order.append(pick)
    return order


def ranking_scores(
    a: np.ndarray,
    c: np.ndarray,
    y: np.ndarray,
    known: np.ndarray,
    model: str = LAW_MODEL,
    min_fit: int = 2,
) -> np.ndarray:
    """Scores to rank all encoders by: measured (normalised over the known ones) where known,
    the law's prediction elsewhere; NaN for unknown encoders while fewer than ``min_fit`` are
    known. ``y`` is only read where ``known`` is true."""
    known = np.asarray(known, dtype=bool)
    out = np.full(len(known), np.nan)
    if not known.any():  # nothing measured yet (a policy's first round): nothing to rank
        return out
    y_known = minmax(np.asarray(y, dtype=float)[known])
    out[known] = y_known
    if known.sum() >= min_fit and (~known).any():
        coef = fit_coefficients(model, a[known], c[known], y_known)
        out[~known] = predict(model, coef, a[~known], c[~known])
    return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest non-NaN scores (ties broken by index, so runs are stable)."""
    scores = np.asarray(scores, dtype=float)
    valid = np.flatnonzero(~np.isnan(scores))
    order = valid[np.argsort(-scores[valid], kind="stable")]
    return order[:k]


class _SuccessCache:
    """Whether the best encoder is in the top-k, memoised by the set of finetuned encoders:
    the answer depends on the set, not the order, and trials revisit the same sets often."""

    def __init__(self, a, c, y, k: int, min_fit: int) -> None:
        self.a, self.c, self.y = a, c, np.asarray(y, dtype=float)
        self.best = set(np.flatnonzero(self.y == self.y.max()).tolist())
        self.k, self.min_fit = k, min_fit
        self.memo: dict[bytes, bool] = {}

    def __call__(self, known: np.ndarray) -> bool:
        key = known.tobytes()
        if key not in self.memo:
            scores = ranking_scores(self.a, self.c, self.y, known, min_fit=self.min_fit)
            self.memo[key] = bool(self.best & set(top_k(scores, self.k).tolist()))
        return self.memo[key]


def finetunes_needed(picks: Iterable[int], n: int, success: _SuccessCache) -> int:
    """Finetunes until the best encoder first shows up in the top-k (``n`` at worst, when
    every score is measured)."""
    known = np.zeros(n, dtype=bool)
    for count, index in enumerate(picks, start=1):
        known[index] = True
        if success(known):
            return count
    return n


def simulate(
    a: np.ndarray,
    c: np.ndarray,
    y: np.ndarray,
    trials: int,
    k: int,
    rng: np.random.Generator,
    strategy: str = "ac",
    min_fit: int = 2,
    cache_cells: bool = True,
) -> np.ndarray:
    """Finetunes needed in each of ``trials`` seeded runs of a strategy ("ac": the region
    sampler; "random": a uniformly random order, ranked by the same law)."""
    a, c, y = (np.asarray(v, dtype=float) for v in (a, c, y))
    n = len(y)
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and the number of encoders ({n}), got {k}")
    success = _SuccessCache(a, c, y, k, min_fit)
    points = np.column_stack([a, c])
    needed = np.empty(trials, dtype=np.int64)
    cells: dict | None = {} if cache_cells else None  # False: as before the cache (benchmarks)
    for t in range(trials):
        if strategy == "ac":
            picks = _lazy_region_order(points, rng, cells)
        elif strategy == "random":
            picks = iter(rng.permutation(n).tolist())
        else:
            raise ValueError(f"unknown strategy '{strategy}'; known: ac, random")
        needed[t] = finetunes_needed(picks, n, success)
    return needed


def _lazy_region_order(
    points: np.ndarray, rng: np.random.Generator, cache: dict | None = None
) -> Iterator[int]:
    """Region-sampler picks drawn one at a time, so a trial that stops early draws no more."""
    finetuned = np.zeros(len(points), dtype=bool)
    while not finetuned.all():
        pick = next_region_pick(points, finetuned, rng, cache)
        finetuned[pick.index] = True
        yield pick.index


def recall_curve(needed: np.ndarray, n: int) -> np.ndarray:
    """Recall@k at budgets 1..n: the fraction of trials that had found the best by then."""
    needed = np.asarray(needed)
    return np.array([(needed <= budget).mean() for budget in range(1, n + 1)])


@dataclass(frozen=True)
class Recommendation:
    next_encoder: str | None
    level: int
    candidates: tuple[str, ...]  # every encoder the policy would pick with equal chance
    ranking: pd.DataFrame  # rank, encoder, A, C, status, score (raw scale)


def recommend(
    encoders: Sequence[str],
    a_raw: np.ndarray,
    c_raw: np.ndarray,
    scores: np.ndarray,
    rng: np.random.Generator,
    min_fit: int = 2,
) -> Recommendation:
    """Next encoder to finetune and the predicted ranking; ``scores`` is NaN where not finetuned.

    A and C are normalised over all encoders (finetuned or not), as in the simulation.
    Predicted scores are mapped back to the measured scale of the finetuned encoders.
    """
    a_raw, c_raw, scores = (np.asarray(v, dtype=float) for v in (a_raw, c_raw, scores))
    names = list(encoders)
    known = ~np.isnan(scores)
    a, c = minmax(a_raw), minmax(c_raw)
    if known.all():
        level, candidates, next_name = -1, (), None
    else:
        points = np.column_stack([a, c])
        level, open_cells = _candidates(points, known)
        candidates = tuple(sorted(names[i] for members in open_cells.values() for i in members))
        next_name = names[next_region_pick(points, known, rng).index]
    normalised = ranking_scores(a, c, np.where(known, scores, 0.0), known, min_fit=min_fit)
    if known.any():  # back to the measured scale of the finetuned encoders
        low, high = scores[known].min(), scores[known].max()
        normalised = np.where(known, scores, normalised * (high - low) + low)
    order = top_k(normalised, len(names)).tolist()
    order += [i for i in range(len(names)) if i not in set(order)]
    rows = [
        {
            "rank": rank if not np.isnan(normalised[i]) else None,
            "encoder": names[i],
            "A": a_raw[i],
            "C": c_raw[i],
            "status": "measured" if known[i] else "predicted",
            "score": normalised[i],
        }
        for rank, i in enumerate(order, start=1)
    ]
    return Recommendation(next_name, level, candidates, pd.DataFrame(rows))

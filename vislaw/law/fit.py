"""The AC law: least-squares fits of a benchmark score on (A, C), and how far to trust them.

Per benchmark, A, C and the score are min-max normalised over the encoders and the score is
regressed on a few small design matrices, the law being the full quadratic
``[1, A, C, A^2, AC, C^2]``. Six parameters on 13 points flatter any in-sample R², so each fit
also reports leave-one-out (LOO) R² and the rank correlation of the held-out predictions,
percentile-bootstrap intervals over encoders, and the R² the same model reaches on random inputs.

Normalisation is done once, over all encoders. Every model here is closed under affine changes
of A, C and y, so least-squares predictions (and with them in-sample and LOO R²) do not depend
on it; only the coefficients' scale does, and the unit square makes them comparable.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

# Model name -> its terms, in the column order of the design matrix.
MODELS: dict[str, tuple[str, ...]] = {
    "a_linear": ("1", "A"),
    "c_linear": ("1", "C"),
    "ac_linear": ("1", "A", "C"),
    "a_quadratic": ("1", "A", "A^2"),
    "c_quadratic": ("1", "C", "C^2"),
    "ac_quadratic": ("1", "A", "C", "A^2", "AC", "C^2"),
}
LAW_MODEL = "ac_quadratic"
LAW_TERMS = len(MODELS[LAW_MODEL])
SPARE_ENCODERS = 2
MIN_DETERMINED = LAW_TERMS + SPARE_ENCODERS
"""Measured encoders below which the law is under-determined: with p terms, n <= p points
interpolate (R² = 1 by construction) and n = p + 1 leaves leave-one-out with p points for p
terms, so no R² is evidence until n = p + 2."""


def underdetermined(n: int, terms: int = LAW_TERMS) -> bool:
    """Too few measured encoders for ``terms`` terms to mean anything (see MIN_DETERMINED)."""
    return n < terms + SPARE_ENCODERS


def fit_statement(n: int, r2: float, loo_r2: float, terms: int = LAW_TERMS) -> str:
    """The one sentence every figure and text gives about a fit: n, in-sample and
    leave-one-out R², or, under-determined, that no R² is evidence (and none is shown)."""
    if underdetermined(n, terms):
        return (
            f"n = {n} encoders for {terms} terms: the fit is under-determined "
            f"(needs at least {terms + SPARE_ENCODERS}), so no R² is shown"
        )
    loo = "n/a" if not np.isfinite(loo_r2) else f"{loo_r2:.2f}"
    return f"n = {n} encoders, in-sample R² {r2:.2f}, leave-one-out R² {loo}"


def minmax(values: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the given values; a constant vector maps to zeros (no information)."""
    values = np.asarray(values, dtype=float)
    low, high = values.min(), values.max()
    if high == low:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def design_matrix(model: str, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Columns of ``MODELS[model]`` evaluated at (a, c); shape (n, n_terms)."""
    if model not in MODELS:
        raise KeyError(f"unknown law model '{model}'; known: {sorted(MODELS)}")
    a = np.asarray(a, dtype=float)
    c = np.asarray(c, dtype=float)
    columns = {
        "1": np.ones_like(a),
        "A": a,
        "C": c,
        "A^2": a * a,
        "AC": a * c,
        "C^2": c * c,
    }
    return np.column_stack([columns[term] for term in MODELS[model]])


def fit_coefficients(model: str, a: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients (minimum-norm when there are fewer points than terms)."""
    coef, *_ = np.linalg.lstsq(design_matrix(model, a, c), np.asarray(y, dtype=float), rcond=None)
    return coef


def predict(model: str, coef: np.ndarray, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    return design_matrix(model, a, c) @ coef


def r2_score(y: np.ndarray, y_hat: np.ndarray) -> float:
    """1 - SS_res / SS_tot around the mean of y; NaN when y is constant (nothing to explain)."""
    y = np.asarray(y, dtype=float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((y - np.asarray(y_hat, dtype=float)) ** 2)) / ss_tot


def loo_predictions(model: str, a: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Each point predicted by the model fitted on all the others.

    NaN everywhere when the remaining points are fewer than the model's terms: the fit would be
    underdetermined and its held-out prediction meaningless.
    """
    a, c, y = (np.asarray(v, dtype=float) for v in (a, c, y))
    n = len(y)
    if n - 1 < len(MODELS[model]):
        return np.full(n, np.nan)
    out = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        coef = fit_coefficients(model, a[keep], c[keep], y[keep])
        out[i] = predict(model, coef, a[i : i + 1], c[i : i + 1])[0]
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation; NaN when either side is constant or holds NaN."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.isnan(x).any() or np.isnan(y).any() or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def random_input_r2(y: np.ndarray, draws: int, rng: np.random.Generator, model: str = LAW_MODEL):
    """Mean in-sample R² of ``model`` when A and C are replaced by uniform noise.

    The floor any in-sample R² must clear: with n points and p terms it is about
    (p - 1) / (n - 1) even though the inputs carry no information.
    """
    y = np.asarray(y, dtype=float)
    values = []
    for _ in range(draws):
        a, c = rng.random(len(y)), rng.random(len(y))
        values.append(r2_score(y, predict(model, fit_coefficients(model, a, c, y), a, c)))
    return float(np.mean(values))


@dataclass(frozen=True)
class Bootstrap:
    """Percentile intervals over resamples of the encoders (drawn with replacement)."""

    r2_low: float
    r2_high: float
    coef_low: np.ndarray
    coef_high: np.ndarray
    used: int  # resamples that could identify the model (see :func:`bootstrap`)


def bootstrap(
    model: str,
    a: np.ndarray,
    c: np.ndarray,
    y: np.ndarray,
    resamples: int,
    rng: np.random.Generator,
    confidence: float = 0.95,
) -> Bootstrap:
    """Bootstrap in-sample R² and coefficients over encoders.

    Resamples with no more distinct encoders than terms (the fit would interpolate), a
    rank-deficient design or a constant score are skipped; ``used`` counts the rest. Duplicated
    points make in-sample R² of a resample optimistic, so read the R² interval as the spread of
    the in-sample number, not as predictive accuracy (that is what LOO R² is for).
    """
    a, c, y = (np.asarray(v, dtype=float) for v in (a, c, y))
    n, p = len(y), len(MODELS[model])
    r2s, coefs = [], []
    for _ in range(resamples):
        idx = rng.integers(0, n, n)
        if len(np.unique(idx)) <= p:  # the model would interpolate: R² = 1 by construction
            continue
        x = design_matrix(model, a[idx], c[idx])
        coef, _, rank, _ = np.linalg.lstsq(x, y[idx], rcond=None)
        if rank < p or np.ptp(y[idx]) == 0:
            continue
        coefs.append(coef)
        r2s.append(r2_score(y[idx], x @ coef))
    tail = 100 * (1 - confidence) / 2
    if not r2s:
        nan = np.full(p, np.nan)
        return Bootstrap(float("nan"), float("nan"), nan, nan.copy(), 0)
    r2_low, r2_high = np.percentile(r2s, [tail, 100 - tail])
    coef_low, coef_high = np.percentile(np.array(coefs), [tail, 100 - tail], axis=0)
    return Bootstrap(float(r2_low), float(r2_high), coef_low, coef_high, len(r2s))


@dataclass(frozen=True)
class ModelFit:
    model: str
    coef: np.ndarray
    fitted: np.ndarray
    r2: float
    loo: np.ndarray
    loo_r2: float
    loo_spearman: float
    boot: Bootstrap | None


@dataclass(frozen=True)
class BenchmarkFit:
    """Every model fitted to one benchmark, on normalised inputs (``a``, ``c``, ``y``)."""

    benchmark: str
    encoders: tuple[str, ...]
    raw: pd.DataFrame  # encoder, A, C, score as measured
    a: np.ndarray
    c: np.ndarray
    y: np.ndarray
    models: dict[str, ModelFit] = field(default_factory=dict)
    r2_random: float = float("nan")

    @property
    def law(self) -> ModelFit:
        return self.models[LAW_MODEL]


def benchmark_rng(seed: int, benchmark: str, purpose: str) -> np.random.Generator:
    """A generator that depends on the seed, the benchmark and the use, not on run order, so a
    benchmark's numbers stay the same when other benchmarks are added or removed."""
    key = [seed, zlib.crc32(benchmark.encode()), zlib.crc32(purpose.encode())]
    return np.random.default_rng(np.random.SeedSequence(key))


def fit_benchmark(
    rows: pd.DataFrame,
    benchmark: str,
    seed: int = 0,
    resamples: int = 1000,
    random_draws: int = 100,
    confidence: float = 0.95,
) -> BenchmarkFit:
    """Fit every model of :data:`MODELS` to one benchmark's rows (encoder, A, C, score)."""
    rows = rows.sort_values("encoder", kind="stable").reset_index(drop=True)
    if len(rows) < 3:
        raise ValueError(f"benchmark '{benchmark}': need at least 3 encoders, got {len(rows)}")
    a, c, y = minmax(rows["A"]), minmax(rows["C"]), minmax(rows["score"])
    models = {}
    for model in MODELS:
        coef = fit_coefficients(model, a, c, y)
        fitted = predict(model, coef, a, c)
        loo = loo_predictions(model, a, c, y)
        boot = None
        if resamples:
            rng = benchmark_rng(seed, benchmark, f"bootstrap/{model}")
            boot = bootstrap(model, a, c, y, resamples, rng, confidence)
        models[model] = ModelFit(
            model=model,
            coef=coef,
            fitted=fitted,
            r2=r2_score(y, fitted),
            loo=loo,
            loo_r2=r2_score(y, loo) if not np.isnan(loo).any() else float("nan"),
            loo_spearman=spearman(loo, y),
            boot=boot,
        )
    r2_random = random_input_r2(y, random_draws, benchmark_rng(seed, benchmark, "random"))
    return BenchmarkFit(
        benchmark=benchmark,
        encoders=tuple(rows["encoder"]),
        raw=rows[["encoder", "A", "C", "score"]].copy(),
        a=a,
        c=c,
        y=y,
        models=models,
        r2_random=r2_random,
    )


def fit_all(
    table: pd.DataFrame,
    seed: int = 0,
    resamples: int = 1000,
    random_draws: int = 100,
    confidence: float = 0.95,
) -> dict[str, BenchmarkFit]:
    """:func:`fit_benchmark` for each benchmark of a tidy table, in first-seen order."""
    return {
        benchmark: fit_benchmark(rows, benchmark, seed, resamples, random_draws, confidence)
        for benchmark, rows in table.groupby("benchmark", sort=False)
    }

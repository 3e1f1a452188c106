"""Finetuning strategies stronger than the paper's region sampler, on one shared footing.

Every strategy sees the same state: for each benchmark the normalised A and C of *all*
encoders (cheap: A needs only stage 1) and the measured score of the finetuned ones. It returns
the next encoder to finetune and a ranking of all encoders. One finetune gives every
benchmark's score, so a pick serves all benchmarks: with several benchmarks the acquisition
values are averaged with the policy weights (the *joint* pick).

The Bayesian strategies fit the law ``y ~ [1, A, C, A², AC, C²]`` by Bayesian linear
regression: a Gaussian prior N(m0, S0) on the six coefficients and Gaussian noise. The prior
is either a ridge (m0 = 0, S0 = I / ridge), which knows nothing about the law's shape, or
learned from other benchmarks' fits (m0 and S0 their mean and covariance, plus ``shrink`` I):
the law's shape transfers between benchmarks, its numbers for this benchmark do not. Measured
scores are min-max normalised over the finetuned encoders (the raw scale of a benchmark is
unknown until its extremes are measured); below two finetunes the prior alone predicts.

- ``ucb``: the ridge prior, pick the largest posterior mean + ``beta`` x sd (exploitation with
  an exploration bonus);
- ``bayes_ucb``: the same with the learned prior;
- ``bayes_ei``: the learned prior, pick the largest expected improvement over the best
  measured score.

All three rank encoders by the measured score where finetuned and the posterior mean
elsewhere. They are deterministic given the finetuned set, except that exact ties are broken by
a seeded random draw (:func:`order_with_random_ties`), never by the encoders' order or names.

Baselines that read no score (:data:`SCORE_FREE`) finetune in descending order of a fixed key:
the mean normalised A over benchmarks (``order_a``), the normalised C (``order_c``) or their
sum (``order_ac``); ``greedy_law`` picks the largest prediction of the plain least-squares law.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from vislaw.law.fit import LAW_MODEL, design_matrix, fit_coefficients, minmax

N_TERMS = 6  # the law's quadratic features
BAYES_STRATEGIES = ("ucb", "bayes_ucb", "bayes_ei")
PRIOR_STRATEGIES = ("bayes_ucb", "bayes_ei")
SCORE_FREE = ("order_a", "order_c", "order_ac")
TIE_TOLERANCE = 1e-12  # values closer than this are a tie


def order_with_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by descending ``values``, exact ties (within :data:`TIE_TOLERANCE`) in a seeded
    random order: an index or name order would favour whichever encoder is listed first."""
    values = np.asarray(values, dtype=float)
    rounded = np.where(np.isfinite(values), np.round(values / TIE_TOLERANCE), values)
    return np.lexsort((rng.random(len(values)), -rounded))


def score_free_key(strategy: str, a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The fixed key a score-free order finetunes by (higher first); ``a``: normalised A per
    benchmark (benchmarks, encoders), averaged over benchmarks; ``c``: normalised C."""
    a_mean = np.mean(np.atleast_2d(a), axis=0)
    keys = {"order_a": a_mean, "order_c": np.asarray(c, float), "order_ac": a_mean + c}
    if strategy not in keys:
        raise ValueError(f"unknown score-free order '{strategy}'; known: {SCORE_FREE}")
    return keys[strategy]


@dataclass(frozen=True)
class BayesParams:
    """Hyper-parameters of the Bayesian strategies (the policy mode passes its settings)."""

    noise: float = 0.01  # noise variance of a normalised score
    beta: float = 0.5  # exploration bonus, in posterior sds (ucb, bayes_ucb)
    ridge: float = 1.0  # prior precision of the ridge prior (ucb)
    shrink: float = 1.0  # added to the learned prior's covariance (bayes_*)


@dataclass(frozen=True)
class Prior:
    """A Gaussian prior on the law's coefficients (normalised A, C and score)."""

    mean: np.ndarray
    precision: np.ndarray

    @classmethod
    def ridge(cls, ridge: float) -> Prior:
        return cls(np.zeros(N_TERMS), np.eye(N_TERMS) * ridge)

    @classmethod
    def learned(cls, coefficients: np.ndarray, shrink: float) -> Prior:
        """From other benchmarks' law coefficients (rows): their mean and covariance."""
        coefficients = np.atleast_2d(np.asarray(coefficients, dtype=float))
        if coefficients.shape[1] != N_TERMS:
            raise ValueError(f"prior coefficients need {N_TERMS} columns")
        cov = np.cov(coefficients.T) if len(coefficients) > 1 else np.zeros((N_TERMS, N_TERMS))
        cov = cov + shrink * np.eye(N_TERMS)
        return cls(coefficients.mean(axis=0), np.linalg.inv(cov))


def law_coefficients(a: np.ndarray, c: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The law's least-squares coefficients on normalised A, C and score."""
    return fit_coefficients(LAW_MODEL, minmax(a), minmax(c), minmax(y))


def posterior(
    phi: np.ndarray, y: np.ndarray, known: np.ndarray, prior: Prior, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean and predictive sd of every encoder's normalised score.

    Finetuned encoders keep their measured score (normalised over the finetuned ones) as
    their mean; with fewer than two finetunes nothing is normalisable and the prior predicts.
    """
    known = np.asarray(known, dtype=bool)
    precision, rhs = prior.precision, prior.precision @ prior.mean
    y_known = None
    if known.sum() >= 2:
        x = phi[known]
        y_known = minmax(np.asarray(y, dtype=float)[known])
        precision = precision + x.T @ x / noise
        rhs = rhs + x.T @ y_known / noise
    cov = np.linalg.inv(precision)
    mean = phi @ (cov @ rhs)
    sd = np.sqrt(np.einsum("ij,jk,ik->i", phi, cov, phi) + noise)
    if y_known is not None:
        mean[known] = y_known
        sd[known] = 0.0
    return mean, sd


def acquisition(strategy: str, mean: np.ndarray, sd: np.ndarray, known: np.ndarray, beta: float):
    """The value of finetuning each encoder (higher is better); -inf where finetuned."""
    if strategy in ("ucb", "bayes_ucb"):
        value = mean + beta * sd
    elif strategy == "bayes_ei":
        incumbent = mean[known].max() if known.any() else mean.max()
        safe = np.where(sd > 0, sd, 1.0)
        z = (mean - incumbent) / safe
        value = (mean - incumbent) * ndtr(z) + safe * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)
    else:
        raise ValueError(f"unknown Bayesian strategy '{strategy}'; known: {BAYES_STRATEGIES}")
    return np.where(known, -np.inf, value)


@dataclass
class BenchmarkState:
    """One benchmark's normalised inputs (all encoders) and its prior."""

    a: np.ndarray
    c: np.ndarray
    y: np.ndarray  # read only where finetuned
    prior: Prior
    weight: float = 1.0

    def __post_init__(self) -> None:
        self.phi = design_matrix(LAW_MODEL, self.a, self.c)


def make_prior(strategy: str, params: BayesParams, coefficients: np.ndarray | None) -> Prior:
    """The ridge prior for ``ucb``; the learned one (from ``coefficients``) otherwise."""
    if strategy in PRIOR_STRATEGIES:
        if coefficients is None or len(np.atleast_2d(coefficients)) == 0:
            raise ValueError(f"strategy '{strategy}' needs prior coefficients")
        return Prior.learned(coefficients, params.shrink)
    return Prior.ridge(params.ridge)


def joint_step(
    strategy: str,
    states: Sequence[BenchmarkState],
    known: np.ndarray,
    params: BayesParams,
) -> tuple[int | None, list[np.ndarray], list[np.ndarray]]:
    """Next pick (None when all are finetuned) and each benchmark's posterior mean and sd."""
    total, means, sds = joint_acquisition(strategy, states, known, params)
    if known.all():
        return None, means, sds
    return int(np.argmax(total)), means, sds


def joint_acquisition(
    strategy: str,
    states: Sequence[BenchmarkState],
    known: np.ndarray,
    params: BayesParams,
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """The weighted acquisition of every encoder (-inf where finetuned), and each benchmark's
    posterior mean and sd.

    Each benchmark's acquisition is scaled by its largest finite value before the weighted
    mean, so that no benchmark dominates by its spread alone.
    """
    means, sds, total = [], [], np.zeros(len(known))
    weights = np.array([s.weight for s in states], dtype=float)
    weights = weights / weights.sum()
    for state, weight in zip(states, weights, strict=True):
        mean, sd = posterior(state.phi, state.y, known, state.prior, params.noise)
        means.append(mean)
        sds.append(sd)
        value = acquisition(strategy, mean, sd, known, params.beta)
        finite = value[np.isfinite(value)]
        scale = np.abs(finite).max() if finite.size and np.abs(finite).max() > 0 else 1.0
        total += weight * np.where(np.isfinite(value), value / scale, 0.0)
    total[known] = -np.inf
    return total, means, sds

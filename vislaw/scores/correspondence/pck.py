"""PCK: the fraction of predicted keypoints within ``alpha`` x the threshold size of the truth.

Pure array maths on the predictions and the queries' truth, per image (each pair weighs the
same), per point, and over the points with a visible symmetric partner (``geo``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from vislaw.scores.correspondence.queries import Queries

ALPHAS: tuple[float, ...] = (0.10, 0.05, 0.01)


def bbox_threshold_size(bboxes: np.ndarray) -> np.ndarray:
    """max(w, h) of (…, 4) boxes x1, y1, x2, y2 (SPair's devkit: w = x2 - x1, no +1)."""
    bboxes = np.asarray(bboxes, dtype=np.float64)
    return np.maximum(bboxes[..., 2] - bboxes[..., 0], bboxes[..., 3] - bboxes[..., 1])


def pck_correct(
    predicted: np.ndarray, truth: np.ndarray, size: np.ndarray, alpha: float
) -> np.ndarray:
    """(n,) bool: Euclidean error strictly below ``alpha * size`` (per-point threshold size)."""
    error = np.linalg.norm(np.asarray(predicted) - np.asarray(truth), axis=-1)
    return error < alpha * np.asarray(size)


def per_image_pck(correct: np.ndarray, pair: np.ndarray, n_pairs: int) -> float:
    """Mean over pairs of each pair's fraction of correct keypoints (pairs without points are
    skipped): every pair weighs the same however many keypoints it has."""
    total = np.bincount(pair, minlength=n_pairs).astype(np.float64)
    hits = np.bincount(pair, weights=correct.astype(np.float64), minlength=n_pairs)
    has = total > 0
    return float((hits[has] / total[has]).mean()) if has.any() else math.nan


def per_point_pck(correct: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of correct keypoints over all (masked) keypoints of the split."""
    values = correct if mask is None else correct[mask]
    return float(values.mean()) if values.size else math.nan


def alpha_tag(alpha: float) -> str:
    """Column tag of an alpha: 0.10 -> '10', 0.05 -> '05', 0.01 -> '01', 0.005 -> '0p5'."""
    percent = round(alpha * 100, 6)
    if percent == int(percent):
        return f"{int(percent):02d}"
    return f"{percent:g}".replace(".", "p")


def pck_table(
    predicted: np.ndarray, queries: Queries, alphas: Sequence[float] = ALPHAS
) -> dict[str, float]:
    """All PCK variants: ``pck<a>_{image,point,geo}`` with the target-bbox threshold and the
    same with ``_imsize`` for the target-image-size threshold."""
    out: dict[str, float] = {}
    for suffix, size in (("", queries.trg_bbox_size), ("_imsize", queries.trg_image_size)):
        for alpha in alphas:
            tag = alpha_tag(alpha)
            correct = pck_correct(predicted, queries.trg_xy, size, alpha)
            out[f"pck{tag}_image{suffix}"] = per_image_pck(correct, queries.pair, queries.n_pairs)
            out[f"pck{tag}_point{suffix}"] = per_point_pck(correct)
            out[f"pck{tag}_geo{suffix}"] = per_point_pck(correct, queries.geo)
    return out

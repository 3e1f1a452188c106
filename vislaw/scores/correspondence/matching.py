"""Matching: each source keypoint's feature picks a cell of its target image's feature grid.

Only features and grid cells here (no SPair, no pixels): the cosine of unit features (a
fusion's members normalised one by one), an optional bilinear upsampling of the grid, argmax or
soft-argmax, and the two block-wise passes over the feature file that score every query of a
target image in one matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from vislaw.scores.settings import CScoreSettings

MATCHERS: tuple[str, ...] = ("argmax", "soft_argmax")


@dataclass(frozen=True)
class MatchSettings:
    """How a source keypoint's feature picks a target location.

    ``argmax``: the centre of the most similar target cell. ``soft_argmax``: the
    softmax(similarity / temperature)-weighted mean of cell centres inside a
    (2 * window + 1)^2 window around the argmax cell (sub-cell precision, robust to a wrong
    far-away peak only through the argmax). ``upsample``: bilinear upsampling factor of both
    feature maps before matching (finer cells; features are re-normalised afterwards).
    """

    matcher: str = "argmax"
    window: int = 3
    temperature: float = 0.05
    upsample: int = 1

    def __post_init__(self) -> None:
        if self.matcher not in MATCHERS:
            raise ValueError(f"matcher {self.matcher!r} is not one of {MATCHERS}")
        if int(self.window) != self.window or self.window < 0:
            raise ValueError(f"window must be an integer >= 0, got {self.window!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature!r}")
        if int(self.upsample) != self.upsample or self.upsample < 1:
            raise ValueError(f"upsample must be an integer >= 1, got {self.upsample!r}")

    @classmethod
    def from_settings(cls, c_score: CScoreSettings) -> MatchSettings:
        """The matching part of the ``c_score`` settings."""
        return cls(c_score.matcher, c_score.window, c_score.temperature, c_score.upsample)


# ---- features -----------------------------------------------------------------------------------
def normalise_features(
    features: torch.Tensor, channel_groups: Sequence[int] | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """Unit vectors along the last axis; with ``channel_groups`` (a fusion's member channel
    counts, in order) each member's block is L2-normalised first, so every member weighs the
    same in the cosine whatever its feature scale."""
    features = features.float()
    if channel_groups:
        if sum(channel_groups) != features.shape[-1]:
            raise ValueError(
                f"channel groups {list(channel_groups)} do not add up to {features.shape[-1]}"
            )
        parts = torch.split(features, list(channel_groups), dim=-1)
        features = torch.cat([torch.nn.functional.normalize(p, dim=-1, eps=eps) for p in parts], -1)
    return torch.nn.functional.normalize(features, dim=-1, eps=eps)


def matching_grid(grid: tuple[int, int], settings: MatchSettings) -> tuple[int, int]:
    return grid[0] * settings.upsample, grid[1] * settings.upsample


def upsample_grids(features: torch.Tensor, grid: tuple[int, int], factor: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, fH*fW, C) by bilinear interpolation (identity for factor 1). With
    ``align_corners=False`` the fine cells tile the same square, so the grid geometry holds."""
    rows, cols = grid
    if features.ndim != 3 or features.shape[1] != rows * cols:
        raise ValueError(f"features {tuple(features.shape)} do not hold a {rows}x{cols} grid")
    if factor == 1:
        return features
    maps = features.reshape(features.shape[0], rows, cols, -1).permute(0, 3, 1, 2)
    maps = torch.nn.functional.interpolate(
        maps, scale_factor=factor, mode="bilinear", align_corners=False
    )
    return maps.permute(0, 2, 3, 1).reshape(features.shape[0], -1, features.shape[2])


def _as_float(features: np.ndarray | torch.Tensor) -> torch.Tensor:
    if torch.is_tensor(features):
        return features.float()
    return torch.from_numpy(np.ascontiguousarray(features)).float()


def _target_side(
    grid: torch.Tensor, channel_groups: Sequence[int] | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(t, scale) with cosine = (unit query @ t.T) * scale. A single encoder's grid is not
    normalised (one norm per cell scales the products instead: one pass over the grid less);
    a fusion's is, member by member."""
    if channel_groups:
        return normalise_features(grid, channel_groups), None
    return grid, 1.0 / torch.linalg.vector_norm(grid, dim=-1).clamp_min(1e-8)


# ---- matching -----------------------------------------------------------------------------------
def match_cells(
    similarity: torch.Tensor, grid: tuple[int, int], settings: MatchSettings
) -> torch.Tensor:
    """(n, H*W) similarities -> (n, 2) continuous grid coordinates (col, row) of the match."""
    rows, cols = grid
    best = similarity.argmax(dim=1)
    row, col = best // cols, best % cols
    if settings.matcher == "argmax" or settings.window == 0:
        return torch.stack([col, row], dim=1).to(torch.float64)
    offsets = torch.arange(-settings.window, settings.window + 1)
    d_row, d_col = (o.reshape(-1) for o in torch.meshgrid(offsets, offsets, indexing="ij"))
    win_row = row[:, None] + d_row[None, :]
    win_col = col[:, None] + d_col[None, :]
    inside = (win_row >= 0) & (win_row < rows) & (win_col >= 0) & (win_col < cols)
    index = win_row.clamp(0, rows - 1) * cols + win_col.clamp(0, cols - 1)
    logits = similarity.gather(1, index).double() / settings.temperature
    weights = torch.softmax(logits.masked_fill(~inside, -math.inf), dim=1)
    return torch.stack([(weights * win_col).sum(1), (weights * win_row).sum(1)], dim=1)


def _blocks(
    features: np.ndarray | h5py.Dataset,
    needed: np.ndarray,
    block_size: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """Contiguous blocks of rows that hold at least one needed image (sorted ``needed``)."""
    n = features.shape[0]
    for start in range(0, n, block_size):
        end = min(start + block_size, n)
        if np.searchsorted(needed, start) < np.searchsorted(needed, end):
            yield start, np.asarray(features[start:end])


def predict_cells(
    features: np.ndarray | h5py.Dataset,
    grid: tuple[int, int],
    src_image: np.ndarray,
    src_cell: np.ndarray,
    trg_image: np.ndarray,
    settings: MatchSettings,
    *,
    channel_groups: Sequence[int] | None = None,
    block_size: int = 16,
    progress: bool = False,
) -> np.ndarray:
    """Match every query (source image row, source cell on the matching grid) against its
    target image row: (n, 2) continuous (col, row) on the matching grid.

    ``features`` is (N, H*W, C), an array or an open HDF5 dataset (read block by block, twice).
    """
    from tqdm import tqdm

    src_image = np.asarray(src_image, dtype=np.int64)
    trg_image = np.asarray(trg_image, dtype=np.int64)
    src_cell = np.asarray(src_cell, dtype=np.int64)
    n, factor = src_image.shape[0], settings.upsample
    fine = matching_grid(grid, settings)
    predicted = torch.empty((n, 2), dtype=torch.float64)
    if n == 0:
        return predicted.numpy()
    # Queries live in target order, so each target's queries are one contiguous slice. They
    # hold raw source features in the file's dtype (float16 stays float16: half the memory,
    # and exact); normalising happens per slice in float32.
    order = np.argsort(trg_image, kind="stable")
    slot = np.empty(n, dtype=np.int64)
    slot[order] = np.arange(n)
    store = torch.float16 if np.dtype(features.dtype) == np.float16 and factor == 1 else None
    buffer = torch.empty((n, features.shape[2]), dtype=store or torch.float32)

    # Pass 1: each query's feature, from its source image's cell.
    src_order = np.argsort(src_image, kind="stable")
    sorted_src = src_image[src_order]
    blocks = _blocks(features, np.unique(src_image), block_size)
    for start, raw in tqdm(blocks, desc="C score: source features", disable=not progress):
        lo, hi = np.searchsorted(sorted_src, [start, start + raw.shape[0]])
        picked = src_order[lo:hi]
        local, cells = src_image[picked] - start, src_cell[picked]
        if factor == 1:
            rows = torch.from_numpy(np.ascontiguousarray(raw[local, cells]))
        else:
            rows = upsample_grids(_as_float(raw), grid, factor)[local, cells]
        buffer[slot[picked]] = rows.to(buffer.dtype)

    # Pass 2: each target image once; its queries from every pair in one product.
    sorted_trg = trg_image[order]
    blocks = _blocks(features, np.unique(trg_image), block_size)
    for start, raw in tqdm(blocks, desc="C score: matching", disable=not progress):
        lo, hi = np.searchsorted(sorted_trg, [start, start + raw.shape[0]])
        grids = upsample_grids(_as_float(raw), grid, factor)
        bounds = np.searchsorted(sorted_trg, np.arange(start, start + raw.shape[0] + 1))
        similarity = torch.empty((hi - lo, grids.shape[1]), dtype=torch.float32)
        for local in np.flatnonzero(np.diff(bounds)):
            a, b = bounds[local], bounds[local + 1]
            query = normalise_features(buffer[a:b], channel_groups)
            target, scale = _target_side(grids[local], channel_groups)
            product = query @ target.T
            similarity[a - lo : b - lo] = product if scale is None else product * scale
        predicted[lo:hi] = match_cells(similarity, fine, settings)
    out = torch.empty_like(predicted)
    out[torch.from_numpy(order)] = predicted
    return out.numpy()

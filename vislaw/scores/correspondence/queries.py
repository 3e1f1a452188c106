"""A split as flat (pair, keypoint) queries, and their predicted keypoints in original pixels.

The bridge between SPair's annotations (pixels of each original image) and the matcher's grid
cells: :class:`Queries` holds every array matching and PCK need, and :func:`predict_keypoints`
maps keypoints through the letterbox into the grid and predictions back out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from vislaw.data.spair import MAX_KEYPOINTS, SpairPair
from vislaw.encoders.preprocess import Letterbox
from vislaw.scores.correspondence.matching import MatchSettings, matching_grid, predict_cells
from vislaw.scores.correspondence.pck import bbox_threshold_size
from vislaw.scores.symmetry import Groups, partner_table

PIXEL_CENTRE = 0.5  # pixel index i is the continuous interval [i, i + 1)


@dataclass(frozen=True, eq=False)
class Queries:
    """One row per (pair, keypoint) of a split: everything matching and PCK need, as arrays."""

    pair: np.ndarray  # (n,) index into the pair list
    src_image: np.ndarray  # (n,) row of the source image in the feature file
    trg_image: np.ndarray
    src_xy: np.ndarray  # (n, 2) original pixels
    trg_xy: np.ndarray
    src_size: np.ndarray  # (n, 2) width, height
    trg_size: np.ndarray
    trg_bbox_size: np.ndarray  # (n,) max(w, h) of the target's box
    trg_image_size: np.ndarray  # (n,) max(width, height) of the target image
    geo: np.ndarray  # (n,) bool: has a symmetric partner visible in the target
    n_pairs: int

    @property
    def n_points(self) -> int:
        return int(self.pair.shape[0])


def build_queries(
    pairs: Sequence[SpairPair],
    image_ids: Sequence[str],
    groups: Mapping[str, Groups] | None = None,
    *,
    source: str = "features",
) -> Queries:
    """Flatten pairs into queries; ``image_ids`` are the feature file's ids (``source`` names the
    file in errors). Without ``groups`` (or a pair's target visibility) ``geo`` is all False."""
    if not pairs:
        raise ValueError("no pairs to score")
    index = {image_id: row for row, image_id in enumerate(image_ids)}
    missing = sorted({i for p in pairs for i in (p.src_id, p.trg_id) if i not in index})
    if missing:
        raise ValueError(f"{source} lacks {len(missing)} SPair image ids, e.g. {missing[:3]}")
    counts = np.array([p.n_points for p in pairs], dtype=np.int64)
    rep = np.repeat(np.arange(len(pairs)), counts)

    def per_pair(values: list) -> np.ndarray:
        return np.asarray(values)[rep]

    trg_bbox = np.stack([p.trg_bbox for p in pairs])
    trg_size = np.array([p.trg_size for p in pairs], dtype=np.float64)
    return Queries(
        pair=rep,
        src_image=per_pair([index[p.src_id] for p in pairs]),
        trg_image=per_pair([index[p.trg_id] for p in pairs]),
        src_xy=np.concatenate([p.src_kps for p in pairs]).reshape(-1, 2),
        trg_xy=np.concatenate([p.trg_kps for p in pairs]).reshape(-1, 2),
        src_size=per_pair([p.src_size for p in pairs]).astype(np.float64),
        trg_size=trg_size[rep],
        trg_bbox_size=bbox_threshold_size(trg_bbox)[rep],
        trg_image_size=trg_size.max(axis=1)[rep],
        geo=_geo_mask(pairs, groups, rep),
        n_pairs=len(pairs),
    )


def _geo_mask(
    pairs: Sequence[SpairPair], groups: Mapping[str, Groups] | None, rep: np.ndarray
) -> np.ndarray:
    if groups is None or any(p.trg_visible is None for p in pairs):
        return np.zeros(rep.shape[0], dtype=bool)
    categories = sorted({p.category for p in pairs})
    tables = np.stack([partner_table(groups.get(c, ()), MAX_KEYPOINTS) for c in categories])
    category = np.array([categories.index(p.category) for p in pairs])[rep]
    slots = np.concatenate([p.kps_ids for p in pairs]).astype(np.int64)
    visible = np.stack([p.trg_visible for p in pairs])[rep]  # (n, slots)
    return (tables[category, slots] & visible).any(axis=1)


def predict_keypoints(
    features: np.ndarray | h5py.Dataset,
    grid: tuple[int, int],
    input_size: int,
    queries: Queries,
    settings: MatchSettings,
    **kwargs: Any,
) -> np.ndarray:
    """(n, 2) predicted target keypoints in the target's original pixels.

    Annotated keypoints are pixel indices: pixel (i, j) covers [i, i + 1) x [j, j + 1) of the
    continuous frame :class:`Letterbox` maps (the frame PIL resizes in), so it enters the grid
    at its centre (i + 0.5, j + 0.5), and a predicted point leaves it the same way.
    """
    fine = matching_grid(grid, settings)
    src = Letterbox(queries.src_size[:, 0], queries.src_size[:, 1], input_size)
    trg = Letterbox(queries.trg_size[:, 0], queries.trg_size[:, 1], input_size)
    cells = predict_cells(
        features,
        grid,
        queries.src_image,
        src.to_cell(queries.src_xy + PIXEL_CENTRE, fine),
        queries.trg_image,
        settings,
        **kwargs,
    )
    return trg.from_grid(cells, fine) - PIXEL_CENTRE

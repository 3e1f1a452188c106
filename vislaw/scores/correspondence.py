"""C score: zero-shot keypoint correspondence on SPair-71k from cached encoder features.

For every source keypoint of a pair: take the feature of the grid cell that holds it, compare
it (cosine) with every cell of the target's grid, predict the best cell (argmax, or a
soft-argmax in a window around it), map the prediction back to the target's original pixels,
and count it correct when it lies within ``alpha * max(h, w)`` of the target's bounding box
(or of the whole target image). C = 100 x per-image PCK@0.10: the mean over pairs of each
pair's fraction of correct keypoints.

Geometry. Under ``protocol: vislaw`` the features were computed on the letterboxed image
(``VisionEncoder.preprocess``), and the feature grid tiles that whole square. Keypoints go
through the same :class:`~vislaw.encoders.preprocess.Letterbox`, so the cell a keypoint indexes
is the cell its pixel was encoded in, and the predicted cell centre maps back exactly. Under
``protocol: paper`` the features were computed as the authors' C-score script did (stretched
image) while the keypoints still go through the letterbox: that mismatch is how the paper's
``corres`` column was computed, so it is reproduced there, not fixed (docs/c_score.md). The
feature file records its protocol and keypoint geometry; the row records the protocol.

Speed. Features are read once per image per pass, in blocks, from the HDF5 cache. Pass one
gathers the unit feature of every (pair, keypoint) query from its source image; pass two takes
each target image once and scores all of its queries, from every pair, in one matrix product,
then matches them all at once. No Python loop runs per keypoint or per pair.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import torch

from vislaw.data.settings import DataSettings
from vislaw.data.spair import MAX_KEYPOINTS, SpairPair, load_pairs
from vislaw.encoders.preprocess import Letterbox
from vislaw.io.atomic import write_csv
from vislaw.io.hdf5 import open_features
from vislaw.io.provenance import InputError, file_sha256
from vislaw.scores.settings import CScoreSettings
from vislaw.scores.symmetry import Groups, partner_table, symmetric_groups

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec
    from vislaw.features import FeaturesSettings

ALPHAS: tuple[float, ...] = (0.10, 0.05, 0.01)
MATCHERS: tuple[str, ...] = ("argmax", "soft_argmax")
PIXEL_CENTRE = 0.5  # pixel index i is the continuous interval [i, i + 1)
# The columns every C-score row starts with (the law reads pck10_image); extras follow.
TABLE_COLUMNS: tuple[str, ...] = (
    "encoder",
    "pck10_image",
    "pck05_image",
    "pck01_image",
    "pck10_point",
    "pck10_geo",
    "n_pairs",
    "n_points",
)


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


# ---- the split as flat (pair, keypoint) queries -------------------------------------------------
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


# ---- PCK ----------------------------------------------------------------------------------------
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


# ---- one encoder's score from its feature file --------------------------------------------------
def feature_channels(path: str | Path) -> int:
    """Channel count C of a feature file (reads the shape only)."""
    with open_features(path) as handle:
        return int(handle.features.shape[2])


def fusion_channel_groups(path: str | Path) -> list[int] | None:
    """Member channel counts of a fusion feature file, None for a single encoder.

    The fusion file's meta names its encoder spec (family ``fusion``, member names) and the
    member files it was concatenated from; the member files are looked up as written, then
    beside the fusion file, and their channel counts must add up to the fusion's.
    """
    path = Path(path)
    with open_features(path) as handle:
        meta, channels = handle.meta, int(handle.features.shape[2])
    encoder = meta.get("encoder") or {}
    written = [Path(p) for p in meta.get("members") or []]
    if encoder.get("family") != "fusion" and not written:
        return None
    names = list(encoder.get("members") or [p.stem for p in written])
    groups = []
    for i, name in enumerate(names):
        tried = [written[i], path.parent / written[i].name] if i < len(written) else []
        tried.append(path.parent / f"{name}.h5")
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: fusion member '{name}' features not found: {tried}")
        groups.append(feature_channels(found))
    if sum(groups) != channels:
        raise ValueError(f"{path}: member channels {groups} do not add up to {channels}")
    return groups


@dataclass(frozen=True)
class ScoreInputs:
    """What :func:`score_features` needs besides the feature file."""

    spair_root: str | Path
    split: str = "test"
    settings: MatchSettings = MatchSettings()
    alphas: tuple[float, ...] = ALPHAS
    symmetry: str = "spair"
    block_size: int = 16
    memory_gb: float = 4.0  # feature files up to this size are read once, not streamed twice


def score_inputs(c_score: CScoreSettings, data: DataSettings) -> ScoreInputs:
    """Scoring inputs from the ``c_score`` and ``data`` settings: the SPair root and split, and
    the demo generator's symmetric groups when data are synthetic."""
    spair_root = data.spair_root()  # ConfigError naming data.spair when the config has none
    assert data.spair is not None
    return ScoreInputs(
        spair_root=spair_root,
        split=data.spair.split,
        settings=MatchSettings.from_settings(c_score),
        alphas=tuple(float(a) for a in c_score.alphas),
        symmetry="synthetic" if data.synthetic is not None else "spair",
        block_size=c_score.block_size,
        memory_gb=float(c_score.memory_gb),
    )


def inputs_from_config(config: Mapping[str, Any]) -> ScoreInputs:
    """:func:`score_inputs` of a checked workflow config."""
    return score_inputs(CScoreSettings.from_config(config), DataSettings.from_config(config))


def score_features(
    features_path: str | Path,
    inputs: ScoreInputs,
    *,
    encoder: str | None = None,
    channel_groups: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """One C-score row for one encoder's feature file (see :data:`TABLE_COLUMNS`).

    ``channel_groups`` defaults to :func:`fusion_channel_groups` of the file (None for a single
    encoder). The grid and input size come from the file (attrs ``grid``, meta
    ``encoder.input_size``).
    """
    features_path = Path(features_path)
    pairs = load_pairs(inputs.spair_root, inputs.split)
    groups = symmetric_groups(inputs.symmetry)
    if channel_groups is None:
        channel_groups = fusion_channel_groups(features_path)
    with open_features(features_path) as cache:
        if cache.grid is None:
            raise ValueError(f"{features_path}: no 'grid' attribute (token grid) to match on")
        encoder_meta = cache.meta.get("encoder") or {}
        keypoints = cache.meta.get("keypoint_geometry", "letterbox")
        if keypoints != "letterbox":
            raise ValueError(f"{features_path}: keypoint geometry {keypoints!r} is not supported")
        protocol = str(cache.meta.get("protocol", "vislaw"))
        # The grid tiles the whole letterboxed square, so the original -> grid mapping does not
        # depend on the input size; the spec's size is used when recorded, for the record.
        input_size = int(encoder_meta.get("input_size") or cache.grid[1])
        queries = build_queries(pairs, cache.ids, groups, source=str(features_path))
        features = cache.features
        if features.size * features.dtype.itemsize <= inputs.memory_gb * 2**30:
            features = features[()]  # decompress every chunk once; both passes from memory
        predicted = predict_keypoints(
            features,
            cache.grid,
            input_size,
            queries,
            inputs.settings,
            channel_groups=channel_groups,
            block_size=inputs.block_size,
            progress=progress,
        )
    name = encoder or encoder_meta.get("name") or features_path.stem
    row = make_row(name, predicted, queries, inputs)
    row["protocol"] = protocol
    return row


def make_row(
    encoder: str, predicted: np.ndarray, queries: Queries, inputs: ScoreInputs
) -> dict[str, Any]:
    """The CSV row: :data:`TABLE_COLUMNS` first, then every other PCK variant and the settings."""
    scores = pck_table(predicted, queries, inputs.alphas)
    row: dict[str, Any] = {
        "encoder": encoder,
        "n_pairs": queries.n_pairs,
        "n_points": queries.n_points,
        "n_geo_points": int(queries.geo.sum()),
    }
    row.update(scores)
    row.update(asdict(inputs.settings))
    row["split"] = inputs.split
    head = [c for c in TABLE_COLUMNS if c in row]
    return {**{c: row[c] for c in head}, **{k: v for k, v in row.items() if k not in head}}


def read_rows(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_c_scores_table(paths: Sequence[str | Path], out: str | Path) -> None:
    """Step ``c_scores_table``: the per-encoder C-score CSVs (one row each, same columns)
    concatenated into one table."""
    rows: list[dict[str, str]] = []
    seen: dict[str, str | Path] = {}
    for path in paths:
        got = read_rows(path)
        if len(got) != 1:
            raise ValueError(f"{path}: expected one C-score row, found {len(got)}")
        missing = [c for c in TABLE_COLUMNS if c not in got[0]]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}")
        encoder = got[0]["encoder"]
        if encoder in seen:  # one row copied over another's file: the law would fit it twice
            raise InputError(path, f"records encoder {encoder!r}, as {seen[encoder]} does")
        seen[encoder] = path
        rows.extend(got)
    write_csv(out, rows)


def run_c_score(
    inputs: ScoreInputs,
    features: str | Path,
    out: str | Path,
    *,
    encoder: str | None = None,
    member_features: Sequence[str | Path] = (),
    spec: EncoderSpec | None = None,
    features_settings: FeaturesSettings | None = None,
) -> dict[str, Any]:
    """Step ``c_score``: one encoder's row, written to ``out`` (CSV, atomic). A fusion's member
    files (``member_features``, in order) give the channel counts that split the fused vector,
    so each member is L2-normalised on its own before the cosine; without them the counts come
    from the fusion file's meta.

    ``spec`` (and ``features_settings``): the config's encoder and ``features`` section; the
    file's record must match them (and each member file its member's spec), else the step
    refuses naming the file and the key rather than score another encoder's features."""
    if spec is not None:
        from vislaw.io.feature_records import check_features_file

        check_features_file(features, spec, features_settings)
        for path, member in zip(member_features, spec.members, strict=False):
            check_features_file(path, member, features_settings)
    groups = [feature_channels(p) for p in member_features] or None
    row = score_features(features, inputs, encoder=encoder, channel_groups=groups)
    row["features_sha256"] = file_sha256(features)  # the row records the file it scored
    write_csv(out, [row])
    return row


# ---- CLI ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    defaults = MatchSettings()
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.scores.correspondence",
        description="C score of one encoder's cached features on SPair-71k (one CSV row).",
    )
    parser.add_argument("--features", required=True, help="feature HDF5 file (rule features)")
    parser.add_argument("--spair-root", required=True, help="folder holding PairAnnotation/ ...")
    parser.add_argument("--split", default="test", choices=("trn", "val", "test"))
    parser.add_argument("--out", required=True, help="output CSV (one row)")
    parser.add_argument("--encoder", help="row name (default: the file's encoder name)")
    parser.add_argument("--matcher", default=defaults.matcher, choices=MATCHERS)
    parser.add_argument("--window", type=int, default=defaults.window, help="soft-argmax radius")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--upsample", type=int, default=defaults.upsample)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(ALPHAS))
    parser.add_argument(
        "--symmetry",
        default="spair",
        choices=("spair", "synthetic"),
        help="symmetric keypoint groups: SPair-71k's, or the demo generator's templates",
    )
    parser.add_argument(
        "--member-features",
        nargs="+",
        help="a fusion's member files, in order (default: found from the fusion file's meta)",
    )
    parser.add_argument("--block-size", type=int, default=16, help="images read per block")
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=4.0,
        help="read feature files up to this size once into memory (else stream twice)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = MatchSettings(args.matcher, args.window, args.temperature, args.upsample)
    except ValueError as err:
        parser.error(str(err))
    inputs = ScoreInputs(
        args.spair_root,
        args.split,
        settings,
        tuple(args.alphas),
        args.symmetry,
        args.block_size,
        args.memory_gb,
    )
    row = run_c_score(
        inputs,
        args.features,
        args.out,
        encoder=args.encoder,
        member_features=args.member_features or (),
    )
    with contextlib.suppress(KeyError):
        print(f"{row['encoder']}: PCK@0.10 per image {100 * row['pck10_image']:.2f}")


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

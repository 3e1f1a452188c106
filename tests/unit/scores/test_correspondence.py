"""C score: geometry, matching, PCK arithmetic, the geo-aware subset and fusions.

Most tests score hand-made SPair fixtures with "oracle" features: each cell's feature encodes
the object coordinate its centre sees (Fourier features, cosine peaks only at equal
coordinates). Oracle features must score 100% on identity, translated and mirrored pairs, and
near the analytic chance level once each image's cells are shuffled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vislaw.config import check_section
from vislaw.data.spair import (
    MAX_KEYPOINTS,
    SpairImage,
    SpairPair,
    load_pairs,
    pair_name,
    write_image_annotation,
    write_pair_annotation,
)
from vislaw.encoders.preprocess import Letterbox, images_to_tensor, letterbox
from vislaw.features import fuse_feature_files
from vislaw.io.hdf5 import write_features
from vislaw.scores.correspondence.cli import main
from vislaw.scores.correspondence.fusion import fusion_channel_groups
from vislaw.scores.correspondence.matching import (
    MatchSettings,
    match_cells,
    normalise_features,
    predict_cells,
)
from vislaw.scores.correspondence.pck import (
    alpha_tag,
    bbox_threshold_size,
    pck_correct,
    pck_table,
    per_image_pck,
    per_point_pck,
)
from vislaw.scores.correspondence.queries import build_queries, predict_keypoints
from vislaw.scores.correspondence.score import ScoreInputs, score_features
from vislaw.scores.correspondence.table import TABLE_COLUMNS, read_rows, run_c_scores_table
from vislaw.scores.settings import CScoreSettings
from vislaw.scores.symmetry import SPAIR_SYMMETRIC_GROUPS, geo_aware

SIZE = 128  # encoder input size
GRID = (32, 32)
EXTENT = 400.0  # > every coordinate in the fixtures


# ---- oracle fixtures ----------------------------------------------------------------------------
def fourier(xy: np.ndarray, n_freq: int = 6) -> np.ndarray:
    """(..., 2) -> (..., 4 * n_freq): cosine similarity = mean cos(w * delta), 1 only at 0."""
    w = 2 * np.pi / (4 * EXTENT) * 2.0 ** np.arange(n_freq)
    angle = np.asarray(xy)[..., None] * w
    return np.concatenate([np.cos(angle), np.sin(angle)], axis=-1).reshape(*xy.shape[:-1], -1)


def cell_centres(size: tuple[int, int], grid: tuple[int, int] = GRID) -> np.ndarray:
    """(H*W, 2) original-pixel centres of the grid cells, row-major."""
    rows, cols = grid
    col, row = np.meshgrid(np.arange(cols), np.arange(rows), indexing="xy")
    return Letterbox(size[0], size[1], SIZE).from_grid(
        np.stack([col, row], -1).reshape(-1, 2), grid
    )


def oracle(size: tuple[int, int], to_object: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return fourier(to_object(cell_centres(size))).astype(np.float32)


def identity(xy: np.ndarray) -> np.ndarray:
    return xy


class Fixture:
    """Writes SPair files and collects per-image oracle features."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.features: dict[str, np.ndarray] = {}
        self.pairs: list[SpairPair] = []

    def image(self, category: str, name: str, size, kps: np.ndarray, bbox, to_object) -> SpairImage:
        slots = np.full((MAX_KEYPOINTS, 2), np.nan)
        slots[: len(kps)] = kps
        image = SpairImage(category, name, size[0], size[1], np.asarray(bbox, float), slots)
        write_image_annotation(self.root, image)
        self.features[image.image_id] = oracle(size, to_object)
        return image

    def pair(self, src: SpairImage, trg: SpairImage, ids: np.ndarray, mirror: bool = False):
        pair_id = len(self.pairs) + 1
        pair = SpairPair(
            pair_id=pair_id,
            name=pair_name(pair_id, src.name, trg.name, src.category),
            category=src.category,
            src_name=src.name,
            trg_name=trg.name,
            src_size=(src.width, src.height),
            trg_size=(trg.width, trg.height),
            src_bbox=src.bbox,
            trg_bbox=trg.bbox,
            src_kps=src.kps[ids],
            trg_kps=trg.kps[ids],
            kps_ids=np.asarray(ids),
            mirror=mirror,
        )
        write_pair_annotation(self.root, "test", pair)
        self.pairs.append(pair)
        return pair

    def write(self, path: Path, transform=None) -> Path:
        ids = sorted(self.features)
        feats = np.stack([self.features[i] for i in ids])
        if transform is not None:
            feats = transform(feats)
        meta = {"encoder": {"name": "oracle", "family": "test", "input_size": SIZE}}
        with write_features(
            path, len(ids), feats.shape[1], feats.shape[2], dtype="float32", grid=GRID, meta=meta
        ) as writer:
            writer.append(ids, feats)
        return path


def random_points(rng: np.random.Generator, bbox, n: int) -> np.ndarray:
    x1, y1, x2, y2 = bbox
    return np.stack([rng.uniform(x1, x2, n), rng.uniform(y1, y2, n)], axis=1)


SIZES = [(200, 120), (90, 160), (150, 150), (240, 70)]


def build_dataset(root: Path, kinds=("identity", "shift", "mirror"), n_kps: int = 12) -> Fixture:
    """Per size and kind one pair: identity (same image), shifted target, mirrored target."""
    rng = np.random.default_rng(0)
    fx = Fixture(root)
    for i, (w, h) in enumerate(SIZES):
        bbox = (0.15 * w, 0.1 * h, 0.85 * w, 0.9 * h)
        kps = random_points(rng, bbox, n_kps)
        src = fx.image("cat", f"src{i}.jpg", (w, h), kps, bbox, identity)
        ids = np.arange(n_kps)
        if "identity" in kinds:
            fx.pair(src, src, ids)
        if "shift" in kinds:
            shift = np.array([0.1 * w, -0.05 * h])
            tw, th = int(w * 1.2), h

            def shifted(xy, s=shift):
                return xy - s

            trg = fx.image(
                "cat",
                f"shift{i}.jpg",
                (tw, th),
                kps + shift,
                np.add(bbox, [*shift, *shift]),
                shifted,
            )
            fx.pair(src, trg, ids)
        if "mirror" in kinds:

            def flipped(xy, w=w):
                return np.stack([w - xy[..., 0], xy[..., 1]], -1)

            mirrored = np.stack([w - 1 - kps[:, 0], kps[:, 1]], -1)  # pixel indices
            mbox = (w - bbox[2], bbox[1], w - bbox[0], bbox[3])
            trg = fx.image("cat", f"mirror{i}.jpg", (w, h), mirrored, mbox, flipped)
            fx.pair(src, trg, ids, mirror=True)
    return fx


DEFAULT = MatchSettings()


def score(fx: Fixture, path: Path, settings: MatchSettings = DEFAULT, **kw) -> dict:
    return score_features(path, ScoreInputs(fx.root, "test", settings), progress=False, **kw)


# ---- geometry -----------------------------------------------------------------------------------
def test_letterbox_grid_round_trip_and_cells():
    lb = Letterbox(np.array([200.0, 90.0])[:, None], np.array([120.0, 160.0])[:, None], SIZE)
    xy = np.random.default_rng(1).uniform(0, 90, size=(2, 5, 2))
    np.testing.assert_allclose(lb.from_grid(lb.to_grid(xy, GRID), GRID), xy, atol=1e-9)
    one = Letterbox(200, 100, SIZE)  # padded 50 px top and bottom in original pixels
    # Top-left image pixel: first column, row 8 of 32 (50 / 200 * 32 = 8); far corner: last col.
    assert one.to_cell(np.array([0.0, 0.0]), GRID) == 8 * 32
    assert one.to_cell(np.array([200.0, 99.9]), GRID) == 23 * 32 + 31  # x = 200 clipped
    # A cell centre maps to the middle of its 6.25 px original-pixel cell.
    np.testing.assert_allclose(one.from_grid(np.array([0.0, 8.0]), GRID), [3.125, 3.125])


@pytest.mark.parametrize("size", [(200, 120), (90, 160)])
def test_keypoint_geometry_matches_the_letterboxed_pixels(size):
    """A bright blob drawn at a keypoint lands, after the encoder's letterbox, where
    Letterbox.to_input says (centroid within 0.5 input px)."""
    w, h = size
    pixels = np.zeros((h, w, 3), dtype=np.uint8)
    x0, y0 = int(0.7 * w), int(0.3 * h)
    pixels[y0 : y0 + 6, x0 : x0 + 6] = 255
    boxed = np.asarray(letterbox(Image.fromarray(pixels), SIZE, (0, 0, 0)), dtype=np.float64)[
        ..., 0
    ]
    ys, xs = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    centroid = np.array([(xs * boxed).sum(), (ys * boxed).sum()]) / boxed.sum()
    expected = Letterbox(w, h, SIZE).to_input(np.array([x0 + 3.0, y0 + 3.0]))
    np.testing.assert_allclose(centroid, expected, atol=0.5)


def _position_image(size, shift=(0, 0)) -> Image.Image:
    """RGB encodes the object coordinate (x - shift, y - shift); blue marks the image."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    rgb = np.stack(
        [(xs - shift[0]) / 300 * 255, (ys - shift[1]) / 300 * 255, np.full_like(xs, 255)], -1
    )
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def _pixel_features(images, stretch: bool = False) -> np.ndarray:
    """Features computed from the encoder's actual input pixels: average-pooled colour per cell,
    decoded to an object coordinate and Fourier-embedded; padding cells get their own axis."""
    if stretch:  # the upstream mistake: stretch the image to a square
        images = [im.resize((SIZE, SIZE), Image.Resampling.BICUBIC) for im in images]
    pixels = images_to_tensor(images, SIZE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    pooled = torch.nn.functional.avg_pool2d(pixels, SIZE // GRID[0]).permute(0, 2, 3, 1)
    pooled = pooled.reshape(len(images), -1, 3).numpy().astype(np.float64)
    inside = pooled[..., 2:3] > 0.99
    coords = pooled[..., :2] * 300
    feats = np.concatenate([fourier(coords) * inside, ~inside], axis=-1)
    return feats.astype(np.float32)


def test_features_from_real_letterboxed_pixels_score_100_and_stretching_does_not(tmp_path):
    """The end-to-end geometry: images go through the encoder's letterbox, keypoints through
    Letterbox; a translated pair scores 100% at alpha 0.05. The upstream geometry (stretched
    image, letterboxed keypoints) loses points on the same pairs."""
    rng = np.random.default_rng(3)
    fx = Fixture(tmp_path / "SPair-71k")
    images = {}
    for i, (w, h) in enumerate([(220, 110), (100, 200)]):
        bbox = (0.2 * w, 0.2 * h, 0.8 * w, 0.8 * h)
        kps = random_points(rng, bbox, 15)
        shift = np.array([8.0, 5.0])
        src = fx.image("dog", f"p{i}.jpg", (w, h), kps, bbox, identity)
        trg = fx.image(
            "dog", f"q{i}.jpg", (w, h), kps + shift, np.add(bbox, [*shift, *shift]), identity
        )
        fx.pair(src, trg, np.arange(15))
        images[src.image_id] = _position_image((w, h))
        images[trg.image_id] = _position_image((w, h), shift)
    for stretch, path in ((False, tmp_path / "boxed.h5"), (True, tmp_path / "stretched.h5")):
        ids = sorted(images)
        feats = _pixel_features([images[i] for i in ids], stretch=stretch)
        for image_id, f in zip(ids, feats, strict=True):
            fx.features[image_id] = f
        fx.write(path)
    boxed = score(fx, tmp_path / "boxed.h5")
    stretched = score(fx, tmp_path / "stretched.h5")
    assert boxed["pck05_image"] == 1.0
    assert stretched["pck05_image"] < 0.8


# ---- oracle / shuffled --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "settings",
    [
        MatchSettings(),
        MatchSettings(matcher="soft_argmax", window=2, temperature=0.02),
        MatchSettings(upsample=2),
    ],
    ids=["argmax", "soft_argmax", "upsample2"],
)
def test_oracle_features_score_100_on_identity_shifted_and_mirrored_pairs(tmp_path, settings):
    fx = build_dataset(tmp_path / "SPair-71k")
    path = fx.write(tmp_path / "oracle.h5")
    row = score(fx, path, settings)
    assert row["n_pairs"] == 12 and row["n_points"] == 12 * 12
    assert row["pck10_image"] == 1.0 and row["pck10_point"] == 1.0
    assert row["pck10_image_imsize"] == 1.0
    assert list(row)[: len(TABLE_COLUMNS)] == list(TABLE_COLUMNS)


def test_identity_predictions_are_the_keypoints_cell_centres(tmp_path):
    """Identity pairs: the prediction is the centre of the keypoint's own cell, in original
    pixels, so the error is at most half a cell per axis (the geometry round trip is exact)."""
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("identity",))
    path = fx.write(tmp_path / "oracle.h5")
    pairs = load_pairs(fx.root, "test")
    queries = build_queries(pairs, sorted(fx.features))
    predicted = predict_keypoints(
        np.stack([fx.features[i] for i in sorted(fx.features)]),
        GRID,
        SIZE,
        queries,
        MatchSettings(),
    )
    half_cell = np.maximum(queries.trg_size[:, 0], queries.trg_size[:, 1]) / GRID[0] / 2
    assert (np.abs(predicted - queries.trg_xy).max(axis=1) <= half_cell + 1e-9).all()
    assert path.is_file()


def _chance(queries, alpha: float, fine_grid=GRID) -> float:
    """Expected per-point PCK of a uniformly random target cell."""
    hits = []
    for k in range(queries.n_points):
        size = tuple(int(v) for v in queries.trg_size[k])
        lb = Letterbox(size[0], size[1], SIZE)
        col, row = np.meshgrid(np.arange(fine_grid[1]), np.arange(fine_grid[0]), indexing="xy")
        centres = lb.from_grid(np.stack([col, row], -1).reshape(-1, 2), fine_grid)
        dist = np.linalg.norm(centres - queries.trg_xy[k], axis=1)
        hits.append((dist < alpha * queries.trg_bbox_size[k]).mean())
    return float(np.mean(hits))


def test_shuffled_features_score_near_chance(tmp_path):
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("shift", "mirror"), n_kps=30)
    rng = np.random.default_rng(7)

    def shuffle(feats):
        return np.stack([f[rng.permutation(f.shape[0])] for f in feats])

    path = fx.write(tmp_path / "shuffled.h5", transform=shuffle)
    row = score(fx, path)
    queries = build_queries(load_pairs(fx.root, "test"), sorted(fx.features))
    chance = _chance(queries, 0.10)
    assert 0.005 < chance < 0.2
    assert abs(row["pck10_point"] - chance) < 0.03
    assert row["pck10_image"] < 0.1


# ---- matching -----------------------------------------------------------------------------------
def test_argmax_and_window_soft_argmax_on_a_hand_made_map():
    grid = (5, 5)
    sim = torch.full((1, 25), -1.0)
    sim[0, 2 * 5 + 1] = 1.0  # (col 1, row 2)
    sim[0, 2 * 5 + 2] = 1.0 - 1e-6  # its right neighbour, nearly as good
    sim[0, 4 * 5 + 4] = 0.999  # far away, outside a window of 1
    np.testing.assert_array_equal(match_cells(sim, grid, MatchSettings()).numpy(), [[1, 2]])
    soft = match_cells(sim, grid, MatchSettings("soft_argmax", window=1, temperature=0.01))
    np.testing.assert_allclose(soft.numpy(), [[1.5, 2.0]], atol=1e-3)
    # A window of 0 is the argmax; a cold temperature tends to the argmax cell.
    np.testing.assert_array_equal(
        match_cells(sim, grid, MatchSettings("soft_argmax", window=0)).numpy(), [[1, 2]]
    )
    wide = match_cells(sim, grid, MatchSettings("soft_argmax", window=3, temperature=0.01))
    assert wide[0, 0] > 1.5 and wide[0, 1] > 2.0  # the far peak now pulls the estimate


def test_vectorised_matching_equals_a_per_keypoint_loop():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(7, 20, 8)).astype(np.float32)
    grid = (4, 5)
    n = 60
    src, trg = rng.integers(0, 7, n), rng.integers(0, 7, n)
    cells = rng.integers(0, 20, n)
    got = predict_cells(feats, grid, src, cells, trg, MatchSettings(), block_size=3)
    unit = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
    for k in range(n):
        best = int(np.argmax(unit[trg[k]] @ unit[src[k], cells[k]]))
        assert tuple(got[k]) == (best % 5, best // 5)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="matcher"):
        MatchSettings(matcher="nearest")
    with pytest.raises(ValueError, match="temperature"):
        MatchSettings(temperature=0)
    with pytest.raises(ValueError, match="upsample"):
        MatchSettings(upsample=0)
    c_score = CScoreSettings.from_mapping(
        check_section("c_score", {"matcher": "soft_argmax", "window": 2}), "c_score"
    )
    assert MatchSettings.from_settings(c_score) == MatchSettings("soft_argmax", 2, 0.05, 1)


# ---- PCK arithmetic -----------------------------------------------------------------------------
def test_threshold_arithmetic_by_hand():
    # bbox 100 wide, 50 high: the threshold uses max(w, h) = 100.
    assert bbox_threshold_size(np.array([10, 20, 110, 70])) == 100
    assert bbox_threshold_size(np.array([0, 0, 30, 80])) == 80
    truth = np.zeros((4, 2))
    predicted = np.array(
        [[3.0, 4.0], [6.0, 8.0], [9.99, 0.0], [0.0, 0.5]]
    )  # errors 5, 10, 9.99, .5
    size = np.full(4, 100.0)
    np.testing.assert_array_equal(pck_correct(predicted, truth, size, 0.10), [1, 0, 1, 1])
    np.testing.assert_array_equal(pck_correct(predicted, truth, size, 0.05), [0, 0, 0, 1])
    np.testing.assert_array_equal(pck_correct(predicted, truth, size, 0.01), [0, 0, 0, 1])
    # Strictly below: error 5 at 0.05 x 100 = 5 is wrong, at 0.05 x 101 right.
    assert pck_correct(predicted[:1], truth[:1], np.array([101.0]), 0.05)[0]
    assert [alpha_tag(a) for a in (0.1, 0.05, 0.01, 0.15, 0.005)] == ["10", "05", "01", "15", "0p5"]


def test_per_image_versus_per_point_averaging():
    # Pair 0: 1 point, right. Pair 1: 3 points, 1 right. Pair 2: 2 points, both wrong.
    correct = np.array([1, 1, 0, 0, 0, 0], dtype=bool)
    pair = np.array([0, 1, 1, 1, 2, 2])
    assert per_image_pck(correct, pair, 3) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert per_point_pck(correct) == pytest.approx(2 / 6)
    assert per_point_pck(correct, np.array([1, 0, 0, 0, 1, 0], bool)) == pytest.approx(0.5)
    assert math.isnan(per_point_pck(correct, np.zeros(6, bool)))


def test_pck_table_image_size_thresholds(tmp_path):
    """Same predictions, two thresholds: the bbox one and the whole-image one."""
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("identity",), n_kps=4)
    queries = build_queries(load_pairs(fx.root, "test"), sorted(fx.features))
    predicted = queries.trg_xy + np.array([0.09, 0.0]) * queries.trg_image_size[:, None]
    table = pck_table(predicted, queries)
    # Error is 9% of the image's longer side: right at 0.10 x image size, and wrong against the
    # bbox (70-80% of the image) at 0.10.
    assert table["pck10_point_imsize"] == 1.0 and table["pck05_point_imsize"] == 0.0
    assert table["pck10_point"] == 0.0


# ---- geo-aware subset ---------------------------------------------------------------------------
def test_geo_aware_subset_on_a_hand_made_pair(tmp_path):
    """Cat: ears (2, 3) and paws (9-12) are symmetric groups. Target shows slots 0, 2, 3, 9:
    slot 2's partner 3 is visible (geo-aware); slot 9's partners are not; slot 0 has none."""
    assert (2, 3) in SPAIR_SYMMETRIC_GROUPS["cat"]
    trg_visible = np.zeros(MAX_KEYPOINTS, bool)
    trg_visible[[0, 2, 3, 9]] = True
    ids = np.array([0, 2, 9])
    np.testing.assert_array_equal(
        geo_aware(ids, trg_visible, SPAIR_SYMMETRIC_GROUPS["cat"]), [0, 1, 0]
    )

    root = tmp_path / "SPair-71k"
    fx = Fixture(root)
    src_kps = np.array(
        [[10, 10], [20, 10], [30, 10], [40, 10], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [50, 30]],
        float,
    )
    trg_kps = src_kps.copy()
    src_kps[[3, 4, 5, 6, 7, 8]] = np.nan  # source shows 0, 1, 2, 9
    trg_kps[[1, 4, 5, 6, 7, 8]] = np.nan  # target shows 0, 2, 3, 9
    src = fx.image("cat", "s.jpg", (60, 40), src_kps, (0, 0, 60, 40), identity)
    trg = fx.image("cat", "t.jpg", (60, 40), trg_kps, (0, 0, 60, 40), identity)
    fx.pair(src, trg, ids)
    queries = build_queries(load_pairs(root, "test"), sorted(fx.features), SPAIR_SYMMETRIC_GROUPS)
    np.testing.assert_array_equal(queries.geo, [False, True, False])
    # Only the geo-aware keypoint is predicted right: geo PCK 1, per point 1/3.
    predicted = queries.trg_xy + np.array([[100.0, 0], [0, 0], [100, 0]])
    table = pck_table(predicted, queries)
    assert table["pck10_geo"] == 1.0 and table["pck10_point"] == pytest.approx(1 / 3)
    # Without symmetric groups no keypoint is geo-aware.
    assert not build_queries(load_pairs(root, "test"), sorted(fx.features), {}).geo.any()


def test_every_category_has_valid_groups():
    from vislaw.data.spair import SPAIR_CATEGORIES

    assert set(SPAIR_SYMMETRIC_GROUPS) == set(SPAIR_CATEGORIES)
    for groups in SPAIR_SYMMETRIC_GROUPS.values():
        flat = [i for g in groups for i in g]
        assert len(flat) == len(set(flat)) and all(0 <= i < MAX_KEYPOINTS for i in flat)
        assert all(len(g) >= 2 for g in groups)


# ---- fusions ------------------------------------------------------------------------------------
def test_normalise_features_per_member():
    x = torch.tensor([[3.0, 4.0, 0.0, 100.0]])
    out = normalise_features(x, [2, 2])
    np.testing.assert_allclose(
        out.numpy(), [[0.6 / 2**0.5, 0.8 / 2**0.5, 0, 1 / 2**0.5]], atol=1e-6
    )
    with pytest.raises(ValueError, match="do not add up"):
        normalise_features(x, [3, 2])


def test_fusion_normalises_each_member_before_concatenating(tmp_path):
    """Member A: large-scale noise; member B: oracle features at a tiny scale. Concatenated as
    they are, A drowns B; with each member normalised first, B's signal decides."""
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("shift",))
    rng = np.random.default_rng(5)
    feats_dir = tmp_path / "features"
    a = fx.write(
        feats_dir / "noise.h5", transform=lambda f: 1000 * rng.normal(size=(*f.shape[:2], 256))
    )
    b = fx.write(feats_dir / "oracle.h5", transform=lambda f: 1e-3 * f)
    fused = feats_dir / "noise+oracle.h5"
    fuse_feature_files([a, b], fused)
    assert fusion_channel_groups(fused) == [256, 24]
    good = score(fx, fused)
    naive = score(fx, fused, channel_groups=[280])
    assert good["pck10_image"] > 0.9
    assert naive["pck10_image"] < 0.5
    # Members moved away: the error names the member and where it was looked for.
    a.rename(tmp_path / "elsewhere.h5")
    with pytest.raises(FileNotFoundError, match="noise"):
        fusion_channel_groups(fused)


# ---- CLI and table ------------------------------------------------------------------------------
def test_cli_row_and_gathered_table(tmp_path, capsys):
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("identity",), n_kps=5)
    path = fx.write(tmp_path / "oracle.h5")
    rows = []
    for name, matcher in (("a", "argmax"), ("b", "soft_argmax")):
        out = tmp_path / f"{name}.csv"
        main(
            [
                "--features",
                str(path),
                "--spair-root",
                str(fx.root),
                "--out",
                str(out),
                "--encoder",
                name,
                "--matcher",
                matcher,
                "--window",
                "1",
            ]
        )
        rows.append(out)
    assert "PCK@0.10 per image 100.00" in capsys.readouterr().out
    run_c_scores_table(rows, tmp_path / "c_scores.csv")
    table = read_rows(tmp_path / "c_scores.csv")
    assert [r["encoder"] for r in table] == ["a", "b"]
    assert list(table[0])[: len(TABLE_COLUMNS)] == list(TABLE_COLUMNS)
    assert table[1]["matcher"] == "soft_argmax" and float(table[0]["pck10_image"]) == 1.0
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0


def test_features_missing_an_image_are_named(tmp_path):
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("identity",), n_kps=3)
    del fx.features["cat/src0.jpg"]
    path = fx.write(tmp_path / "partial.h5")
    with pytest.raises(ValueError, match=r"partial\.h5 lacks 1 SPair image ids.*cat/src0\.jpg"):
        score(fx, path)


def test_streamed_and_in_memory_scoring_agree(tmp_path):
    """Below the memory budget the file is read once; above it, streamed in blocks, twice."""
    fx = build_dataset(tmp_path / "SPair-71k", kinds=("shift", "mirror"), n_kps=6)
    rng = np.random.default_rng(2)
    path = fx.write(tmp_path / "noisy.h5", transform=lambda f: f + rng.normal(0, 1.0, f.shape))
    settings = MatchSettings("soft_argmax", window=2, upsample=2)
    once = score_features(path, ScoreInputs(fx.root, "test", settings), progress=False)
    streamed = score_features(
        path, ScoreInputs(fx.root, "test", settings, block_size=3, memory_gb=0), progress=False
    )
    assert once == streamed
    assert (
        0.3 < once["pck10_point"] < 1.0
    )  # noisy enough to make errors, so agreement means something


def test_synthetic_groups_come_from_the_generator_templates():
    from vislaw.data.synthetic import SPAIR_TEMPLATES
    from vislaw.scores.symmetry import symmetric_groups

    groups = symmetric_groups("synthetic")
    assert set(groups) == set(SPAIR_TEMPLATES)
    assert (7, 8) in groups["bird"] and (8, 9) in groups["aeroplane"]
    with pytest.raises(ValueError, match="unknown symmetry source"):
        symmetric_groups("pascal")

"""Feature extraction of an image set to HDF5, and fusion of cached member features."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vislaw.encoders.base import EncoderSpec
from vislaw.features import extract_features, fuse_feature_files, spair_image_ids
from vislaw.io.hdf5 import read_features, write_features


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "SPair-71k" / "JPEGImages"
    rng = np.random.default_rng(0)
    for category in ("bird", "aeroplane"):
        (folder / category).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 255, size=(40 + 10 * i, 60, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / category / f"{i:03d}.jpg")
    return folder


def test_spair_image_ids_sorted_relative(image_folder):
    ids = spair_image_ids(image_folder.parent)
    assert ids[0] == "aeroplane/000.jpg" and ids[-1] == "bird/002.jpg"
    assert len(ids) == 6


def test_spair_image_ids_names_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        spair_image_ids(tmp_path)


def test_extract_features_streams_all_images(image_folder, tmp_path):
    spec = EncoderSpec("clip_tiny", "clip", input_size=56, tiny={})
    ids = spair_image_ids(image_folder.parent)
    out = tmp_path / "clip.h5"
    extract_features(spec, image_folder, ids, out, batch_size=4, dtype="float32")
    got = read_features(out)
    assert got.ids == ids
    assert got.features.shape == (6, 16, 32)
    assert got.grid == (4, 4)
    assert got.meta["encoder"]["name"] == "clip_tiny"
    # Seeded twin: a second extraction is identical; different images give different features.
    again = tmp_path / "again.h5"
    extract_features(spec, image_folder, ids, again, batch_size=2, dtype="float32")
    np.testing.assert_allclose(read_features(again).features, got.features, atol=1e-5)
    assert not np.allclose(got.features[0], got.features[1])


def test_unreadable_image_is_named(image_folder, tmp_path):
    (image_folder / "bird" / "broken.jpg").write_bytes(b"not a jpeg")
    spec = EncoderSpec("clip_tiny", "clip", input_size=56, tiny={})
    with pytest.raises(OSError, match="broken.jpg"):
        extract_features(spec, image_folder, ["bird/broken.jpg"], tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def _write(path, ids, array, grid):
    with write_features(
        path, len(ids), array.shape[1], array.shape[2], dtype="float32", grid=grid
    ) as w:
        w.append(ids, array)


def test_fuse_concatenates_channels(tmp_path):
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 5))
    ids = ["x", "y", "z"]
    _write(tmp_path / "a.h5", ids, a, (2, 2))
    _write(tmp_path / "b.h5", ids, b, (2, 2))
    fuse_feature_files([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "ab.h5")
    fused = read_features(tmp_path / "ab.h5")
    assert fused.features.shape == (3, 4, 7)
    np.testing.assert_allclose(fused.features[..., :2], a, atol=1e-6)
    np.testing.assert_allclose(fused.features[..., 2:], b, atol=1e-6)
    assert fused.grid == (2, 2) and fused.ids == ids


def test_fuse_refuses_different_ids_or_grids(tmp_path):
    _write(tmp_path / "a.h5", ["x"], np.zeros((1, 4, 2)), (2, 2))
    _write(tmp_path / "b.h5", ["y"], np.zeros((1, 4, 2)), (2, 2))
    _write(tmp_path / "c.h5", ["x"], np.zeros((1, 9, 2)), (3, 3))
    with pytest.raises(ValueError, match="ids differ"):
        fuse_feature_files([tmp_path / "a.h5", tmp_path / "b.h5"], tmp_path / "ab.h5")
    with pytest.raises(ValueError, match="grid"):
        fuse_feature_files([tmp_path / "a.h5", tmp_path / "c.h5"], tmp_path / "ac.h5")
    assert not (tmp_path / "ab.h5").exists() and not (tmp_path / "ac.h5").exists()


def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "vislaw.features", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--encoder" in out.stdout

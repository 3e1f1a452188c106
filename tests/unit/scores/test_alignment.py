"""A score v1 on hand-made tensors with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vislaw.io.hdf5 import write_features
from vislaw.scores.alignment import alignment_score, per_image_alignment


def test_identical_embeddings_give_one():
    x = torch.randn(3, 5, 8)
    assert torch.allclose(per_image_alignment(x, x.clone()), torch.ones(3), atol=1e-6)


def test_scale_does_not_matter():
    x = torch.randn(2, 4, 6)
    assert torch.allclose(per_image_alignment(3.0 * x, x), torch.ones(2), atol=1e-6)


def test_orthogonal_embeddings_give_zero():
    eye = torch.eye(8)
    target = eye[:4].unsqueeze(0)  # tokens e0..e3
    reference = eye[4:].unsqueeze(0)  # tokens e4..e7
    assert torch.allclose(per_image_alignment(target, reference), torch.zeros(1), atol=1e-7)


def test_hand_computed_with_different_token_counts():
    # target tokens: e0, (e0+e1)/sqrt2 ; reference tokens: e0, e2, e1 (3 tokens vs 2)
    e = torch.eye(3)
    target = torch.stack([e[0], e[0] + e[1]]).unsqueeze(0)
    reference = torch.stack([e[0], e[2], e[1]]).unsqueeze(0)
    # best matches: 1.0 for e0; 1/sqrt(2) for the diagonal token
    expected = (1.0 + 2**-0.5) / 2
    assert per_image_alignment(target, reference).item() == pytest.approx(expected, abs=1e-6)


def test_max_is_over_reference_tokens_per_image_only():
    # Image 0's target equals image 1's reference: pairing must stay per image.
    e = torch.eye(4)
    target = torch.stack([e[:1], e[1:2]])
    reference = torch.stack([e[1:2], e[0:1]])
    assert torch.allclose(per_image_alignment(target, reference), torch.zeros(2), atol=1e-7)


def test_mismatched_widths_are_refused():
    with pytest.raises(ValueError, match="embedding width"):
        per_image_alignment(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


def _write(path, ids, array):
    with write_features(path, len(ids), array.shape[1], array.shape[2], dtype="float32") as w:
        w.append(ids, array)


def test_score_from_files_matches_ids_not_order(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.normal(size=(5, 3, 4)).astype(np.float32)
    other = rng.normal(size=(5, 7, 4)).astype(np.float32)
    ids = [f"img{i}" for i in range(5)]
    _write(tmp_path / "t.h5", ids, target)
    order = [3, 0, 4, 1, 2]
    _write(tmp_path / "r.h5", [ids[i] for i in order], other[order])
    expected = per_image_alignment(torch.from_numpy(target), torch.from_numpy(other)).mean().item()
    got = alignment_score(tmp_path / "t.h5", tmp_path / "r.h5", batch_size=2)
    assert got == pytest.approx(expected, abs=1e-6)
    assert alignment_score(tmp_path / "t.h5", tmp_path / "t.h5") == pytest.approx(1.0, abs=1e-6)


def test_missing_reference_ids_are_named(tmp_path):
    _write(tmp_path / "t.h5", ["a", "b"], np.ones((2, 1, 2), dtype=np.float32))
    _write(tmp_path / "r.h5", ["a"], np.ones((1, 1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="lacks 1 image ids"):
        alignment_score(tmp_path / "t.h5", tmp_path / "r.h5")

"""SPair-71k reader: the release layout on tiny hand-made fixtures, and errors that name files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vislaw.data.spair import (
    MAX_KEYPOINTS,
    SPAIR_CATEGORIES,
    SpairFormatError,
    SpairImage,
    SpairPair,
    load_image_annotation,
    load_pairs,
    pair_files,
    pair_name,
    write_image_annotation,
    write_layout,
    write_pair_annotation,
)


def make_image(
    category: str, name: str, size: tuple[int, int], kps: dict[int, tuple]
) -> SpairImage:
    slots = np.full((MAX_KEYPOINTS, 2), np.nan)
    for slot, xy in kps.items():
        slots[slot] = xy
    return SpairImage(category, name, size[0], size[1], np.array([5.0, 6, size[0] - 5, 40]), slots)


def make_pair(pair_id: int, src: SpairImage, trg: SpairImage, mirror: bool = False) -> SpairPair:
    both = np.flatnonzero(src.visible & trg.visible)
    return SpairPair(
        pair_id=pair_id,
        name=pair_name(pair_id, src.name, trg.name, src.category),
        category=src.category,
        src_name=src.name,
        trg_name=trg.name,
        src_size=(src.width, src.height),
        trg_size=(trg.width, trg.height),
        src_bbox=src.bbox,
        trg_bbox=trg.bbox,
        src_kps=src.kps[both],
        trg_kps=trg.kps[both],
        kps_ids=both,
        mirror=mirror,
        flags={"viewpoint_variation": 1},
    )


@pytest.fixture
def spair_root(tmp_path: Path) -> Path:
    """Two cat images and one bird image; three test pairs, one mirrored."""
    root = tmp_path / "SPair-71k"
    a = make_image("cat", "a.jpg", (120, 80), {0: (10, 12), 2: (30, 20), 3: (50, 22), 9: (60, 70)})
    b = make_image("cat", "b.jpg", (64, 96), {0: (11, 13), 2: (31, 21), 9: (40, 90), 10: (5, 5)})
    c = make_image("bird", "c.jpg", (50, 50), {1: (10, 10), 2: (40, 10)})
    for image in (a, b, c):
        write_image_annotation(root, image)
    pairs = [make_pair(1, a, b), make_pair(2, b, a, mirror=True), make_pair(3, c, c)]
    for pair in pairs:
        write_pair_annotation(root, "test", pair)
    return root


def test_categories_are_the_release_18():
    assert len(SPAIR_CATEGORIES) == 18 and len(set(SPAIR_CATEGORIES)) == 18
    assert {"aeroplane", "pottedplant", "tvmonitor"} <= set(SPAIR_CATEGORIES)


def test_load_pairs_reads_every_field(spair_root):
    pairs = load_pairs(spair_root, "test")
    assert [p.pair_id for p in pairs] == [1, 2, 3]
    first = pairs[0]
    assert (first.src_id, first.trg_id) == ("cat/a.jpg", "cat/b.jpg")
    assert first.src_size == (120, 80) and first.trg_size == (64, 96)  # (width, height)
    np.testing.assert_array_equal(first.kps_ids, [0, 2, 9])  # mutually visible slots
    np.testing.assert_array_equal(first.src_kps, [[10, 12], [30, 20], [60, 70]])
    np.testing.assert_array_equal(first.trg_kps, [[11, 13], [31, 21], [40, 90]])
    np.testing.assert_array_equal(first.trg_bbox, [5, 6, 59, 40])
    assert first.mirror is False and pairs[1].mirror is True
    assert first.flags == {"viewpoint_variation": 1}
    # Target visibility comes from the target's image annotation: b shows slots 0, 2, 9, 10.
    assert np.flatnonzero(first.trg_visible).tolist() == [0, 2, 9, 10]
    assert np.flatnonzero(pairs[1].trg_visible).tolist() == [0, 2, 3, 9]


def test_category_filter_and_without_images(spair_root):
    pairs = load_pairs(spair_root, "test", categories=["bird"], with_images=False)
    assert [p.category for p in pairs] == ["bird"] and pairs[0].trg_visible is None
    with pytest.raises(ValueError, match="unknown SPair-71k categories"):
        load_pairs(spair_root, "test", categories=["unicorn"])


def test_layout_list_sets_order_and_missing_listed_file_is_named(spair_root):
    pairs = load_pairs(spair_root, "test")
    write_layout(spair_root, "test", [pairs[2], pairs[0]])
    assert [p.pair_id for p in load_pairs(spair_root, "test")] == [3, 1]
    (spair_root / "PairAnnotation" / "test" / f"{pairs[0].name}.json").unlink()
    with pytest.raises(SpairFormatError, match=r"000001-a-b:cat\.json.*listed in"):
        pair_files(spair_root, "test")


def test_missing_split_and_unknown_split(spair_root):
    with pytest.raises(SpairFormatError, match=r"PairAnnotation/val"):
        load_pairs(spair_root, "val")
    with pytest.raises(ValueError, match="unknown SPair-71k split"):
        load_pairs(spair_root, "train")


def _pair_file(root: Path, pair_id: int) -> Path:
    return next((root / "PairAnnotation" / "test").glob(f"{pair_id:06d}-*.json"))


def _edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"src_kps": None}, r"missing key\(s\) \['src_kps'\]"),
        ({"trg_kps": [[1, 2]]}, "3 src_kps, 1 trg_kps and 3 kps_ids"),
        ({"src_kps": [[1, 2], [3, "x"], [5, 6]]}, r"'src_kps\[1\]': expected a finite number"),
        ({"kps_ids": ["0", "2", "31"]}, "outside 0..29"),
        ({"kps_ids": ["0", "2", "2"]}, "repeats a keypoint"),
        ({"trg_bndbox": [10, 10, 5, 20]}, "empty box"),
        ({"src_imsize": [120]}, "expected \\[width, height, depth\\]"),
        ({"category": "unicorn"}, "'category': 'unicorn'"),
        ({"mirror": "yes"}, "'mirror': expected an integer flag"),
    ],
)
def test_malformed_pair_annotation_names_the_file(spair_root, changes, message):
    path = _pair_file(spair_root, 1)
    _edit(path, **changes)
    with pytest.raises(SpairFormatError, match=message) as info:
        load_pairs(spair_root, "test")
    assert info.value.path == path and str(path) in str(info.value)


def test_unreadable_json_names_the_file(spair_root):
    path = _pair_file(spair_root, 2)
    path.write_text("{not json")
    with pytest.raises(SpairFormatError, match="not valid JSON") as info:
        load_pairs(spair_root, "test")
    assert info.value.path == path


def test_image_annotation_errors_name_the_file(spair_root):
    image_path = spair_root / "ImageAnnotation" / "cat" / "b.json"
    data = json.loads(image_path.read_text())
    data["kps"]["2"] = None  # the pair says slot 2 is visible in b
    image_path.write_text(json.dumps(data))
    with pytest.raises(SpairFormatError, match=r"trg keypoints \[2\] are null in .*b\.json"):
        load_pairs(spair_root, "test")
    data["kps"]["2"] = [31, 21]
    data["image_width"] = 65
    image_path.write_text(json.dumps(data))
    with pytest.raises(SpairFormatError, match=r"trg_imsize \(64, 96\) differs from .*b\.json"):
        load_pairs(spair_root, "test")
    image_path.unlink()
    with pytest.raises(SpairFormatError, match="file not found") as info:
        load_pairs(spair_root, "test")
    assert info.value.path == image_path


def test_image_annotation_round_trip_and_list_form(spair_root):
    image = load_image_annotation(spair_root, "cat/a.jpg")
    assert (image.width, image.height) == (120, 80)
    assert np.flatnonzero(image.visible).tolist() == [0, 2, 3, 9]
    path = spair_root / "ImageAnnotation" / "cat" / "a.json"
    data = json.loads(path.read_text())
    data["kps"] = [data["kps"][str(i)] for i in range(MAX_KEYPOINTS)]  # list of slots
    path.write_text(json.dumps(data))
    again = load_image_annotation(spair_root, "cat/a.jpg")
    np.testing.assert_array_equal(again.kps, image.kps)
    data["category"] = "dog"
    path.write_text(json.dumps(data))
    with pytest.raises(SpairFormatError, match="does not match"):
        load_image_annotation(spair_root, "cat/a.jpg")

"""Data that lies: check_data reports every bad item (by file and id, counted), and the readers
refuse the same items with the same checks (missing image, path escaping its folder, keypoints
or boxes outside the image, pair/image disagreement, truncated or non-UTF-8 JSON, 16-bit PNG)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vislaw.data import spair
from vislaw.data.check import Report, check_dataset, check_llava
from vislaw.data.images import DataError, image_path, read_rgb
from vislaw.data.llava import read_llava_json


def _turns(image: bool) -> list[dict]:
    return [
        {"from": "human", "value": ("<image>\n" if image else "") + "What is it?"},
        {"from": "gpt", "value": "A square."},
    ]


@pytest.fixture
def llava(tmp_path):
    folder = tmp_path / "images"
    (folder / "coco").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(folder / "coco" / "ok.jpg")
    (tmp_path / "secret.jpg").write_bytes(b"not yours")
    records = [
        {"id": "good", "image": "coco/ok.jpg", "conversations": _turns(True)},
        {"id": "text", "conversations": _turns(False)},
        {"id": "gone1", "image": "coco/missing.jpg", "conversations": _turns(True)},
        {"id": "gone2", "image": "gqa/missing.jpg", "conversations": _turns(True)},
        {"id": "escape", "image": "../secret.jpg", "conversations": _turns(True)},
        {"id": "absolute", "image": str(tmp_path / "secret.jpg"), "conversations": _turns(True)},
        {"id": "gptfirst", "conversations": list(reversed(_turns(False)))},
        {"id": "noplaceholder", "image": "coco/ok.jpg", "conversations": _turns(False)},
    ]
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(records))
    return path, folder


def test_check_llava_reports_every_bad_item_with_counts(llava, tmp_path):
    path, folder = llava
    report = check_llava(path, folder, Report("instruct"))
    assert report.checked == 8 and report.bad == 6
    assert {k: len(v) for k, v in report.problems.items()} == {
        "missing image": 2,
        "image path escapes its folder": 2,
        "malformed sample": 2,
    }
    text = report.summary()
    for item in ("gone1", "gone2", "escape", "absolute", "gptfirst", "noplaceholder"):
        assert f"{item}" in text
    assert str(path) in text
    out = tmp_path / "report.txt"
    with pytest.raises(DataError, match="6 bad"):
        report.write_or_raise(out)
    assert not out.exists()  # no clean report under the final name: training cannot start
    assert "gone2" in out.with_name("report.txt.failed").read_text()


def test_reader_refuses_the_same_items(llava):
    path, folder = llava
    with pytest.raises(ValueError, match=r"mix.json\[6\].*gptfirst.*expected 'human'"):
        read_llava_json(path)
    with pytest.raises(DataError, match=r"mix.json: item escape: .*escapes its folder"):
        image_path(folder, "../secret.jpg", source=path, item="escape")
    (folder / "link.jpg").symlink_to(path.parent / "secret.jpg")
    with pytest.raises(DataError, match="link out of"):
        image_path(folder, "link.jpg", source=path, item="link")
    assert image_path(folder, "coco/ok.jpg", source=path, item="good") == folder / "coco/ok.jpg"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'[{"id": "a", "conversations": [', "not valid JSON at line 1"),
        (b"[\xff\xfe]", "not UTF-8"),
    ],
)
def test_llava_json_errors_name_the_file(tmp_path, content, expected):
    path = tmp_path / "blip_laion_cc_sbu_558k.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        read_llava_json(path)
    assert str(path) in str(info.value)
    report = check_llava(path, tmp_path, Report("pretrain"))
    assert str(path) in report.summary() and report.bad == 1


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.full((4, 4), 32896, dtype=np.uint16)  # mid grey (128 * 257)
    values[0, 0] = 65535
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").convert("RGB").getpixel((1, 1)) == (255, 255, 255)
    rgb = read_rgb(tmp_path / "g16.png")
    assert rgb.mode == "RGB" and rgb.getpixel((1, 1)) == (128, 128, 128)
    assert rgb.getpixel((0, 0)) == (255, 255, 255)


# ---- SPair-71k (fixtures demo_data, spair_config: conftest.py) ----------------------------------
def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_demo_datasets_pass_the_check(demo_data):
    for dataset in ("pretrain", "instruct", "spair"):
        report = check_dataset(demo_data, dataset)
        assert report.checked > 0 and report.bad == 0, report.summary()


def test_check_spair_reports_bounds_disagreement_and_missing_images(spair_config, tmp_path):
    root = tmp_path / "SPair-71k"
    pairs = spair.pair_files(root, "test")
    first = json.loads(pairs[0].read_text())
    # 1. a keypoint outside its image, in an image annotation
    image_json = spair.image_annotation_path(root, f"{first['category']}/{first['src_imname']}")

    def push_out(data):
        slot = next(k for k, v in data["kps"].items() if v is not None)
        data["kps"][slot] = [data["image_width"] + 40, 3]

    _edit(image_json, push_out)
    # 2. a pair whose target keypoints disagree with the target's image annotation, and
    # 3. a pair whose box leaves the image
    stem = Path(first["src_imname"]).stem  # pairs without that image
    other = next(p for p in pairs if stem not in p.name)
    _edit(other, lambda d: d["trg_kps"][0].__setitem__(0, d["trg_kps"][0][0] + 5))
    third = next(p for p in pairs if stem not in p.name and p != other)
    _edit(third, lambda d: d["src_bndbox"].__setitem__(2, d["src_imsize"][0] + 9))
    report = check_dataset(spair_config, "spair")
    kinds = {k: len(v) for k, v in report.problems.items()}
    assert kinds["bad image annotation"] == 1
    assert kinds["pair disagrees with image annotation"] >= 1
    assert kinds["bad pair annotation"] == 1
    text = report.text()
    assert f"{image_json}: 'kps'" in text and "outside the" in text
    assert f"{other}: trg_kps[0]" in text and f"{third}: 'src_bndbox'" in text
    # The reader refuses the same files with the same messages.
    with pytest.raises(spair.SpairFormatError, match="outside the"):
        spair.load_pairs(root, "test")


def test_check_spair_reports_a_missing_image(spair_config, tmp_path):
    root = tmp_path / "SPair-71k"
    victim = sorted((root / "JPEGImages").rglob("*.jpg"))[0]
    victim.unlink()
    report = check_dataset(spair_config, "spair")
    assert len(report.problems["missing image"]) == 1
    assert str(victim) in report.problems["missing image"][0]
    assert report.problems["pair with a bad image"]  # every pair using it is counted

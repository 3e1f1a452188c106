"""Bad image files and JSON that check_data used to let through or crash on (issue 23, scope 4):
a 0-byte image, a truncated JPEG, a decompression bomb, a file in a format no dataset uses, an
image that is a link out of its folder, a JSON nested 200,000 deep. Each is reported by kind,
file and item, for SPair and for LLaVA JSON, and the readers refuse the same files."""

from __future__ import annotations

import io
import json
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vislaw.data import spair
from vislaw.data.check import Report, check_dataset, check_llava
from vislaw.data.images import DataError, ImageError, decode_image
from vislaw.data.llava import load_image, read_llava_json
from vislaw.features import read_image

DEEP_JSON = "[" * 200_000 + "]" * 200_000


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(side: int = 20_000) -> bytes:
    """A real decompression bomb: a ``side`` x ``side`` 1-bit PNG of zeros, a few tens of KB
    that decode to side**2 pixels (400 million by default, over Pillow's hard limit)."""
    raw = bytes((side // 8 + 1) * side)  # each row: filter byte 0, then side/8 zero bytes
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


def _noise_jpeg(size: tuple[int, int]) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _empty(victim: Path, outside: Path) -> None:
    victim.write_bytes(b"")


def _truncated(victim: Path, outside: Path) -> None:
    with Image.open(victim) as image:
        data = _noise_jpeg(image.size)
    victim.write_bytes(data[: len(data) // 2])


def _bomb(victim: Path, outside: Path) -> None:
    victim.write_bytes(bomb_png())


def _other_format(victim: Path, outside: Path) -> None:
    with Image.open(victim) as image:
        rgb = image.convert("RGB")
    buffer = io.BytesIO()
    rgb.save(buffer, format="PPM")  # decodes fine, but no dataset ships PPM
    victim.write_bytes(buffer.getvalue())


def _linked_out(victim: Path, outside: Path) -> None:
    shutil.copy(victim, outside)  # a valid image of the right size, outside the folder
    victim.unlink()
    victim.symlink_to(outside)


BAD_FILES: list[tuple[str, Callable[[Path, Path], None], str]] = [
    ("0-byte", _empty, "empty image"),
    ("truncated JPEG", _truncated, "truncated or corrupt image"),
    ("decompression bomb", _bomb, "oversized image"),
    ("unsupported format", _other_format, "unsupported image format"),
    ("symlink out of its folder", _linked_out, "image path escapes its folder"),
]
IDS = [case[0] for case in BAD_FILES]


# ---- LLaVA JSON ----------------------------------------------------------------------------------
def _turns() -> list[dict]:
    return [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A cat."}]


@pytest.fixture
def llava(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("ok.jpg", "victim.jpg"):
        (folder / name).write_bytes(_noise_jpeg((32, 24)))
    records = [
        {"id": "good", "image": "ok.jpg", "conversations": _turns()},
        {"id": "bad1", "image": "victim.jpg", "conversations": _turns()},
        {"id": "bad2", "image": "victim.jpg", "conversations": _turns()},
    ]
    path = tmp_path / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(records))
    return path, folder


@pytest.mark.parametrize(("what", "spoil", "kind"), BAD_FILES, ids=IDS)
def test_check_llava_reports_a_bad_image_by_file_and_item(llava, tmp_path, what, spoil, kind):
    path, folder = llava
    spoil(folder / "victim.jpg", tmp_path / "outside.jpg")
    report = check_llava(path, folder, Report("instruct"), max_pixels=89478485, workers=2)
    assert {k: len(v) for k, v in report.problems.items()} == {kind: 2}, report.summary()
    for item, message in zip(("bad1", "bad2"), report.problems[kind], strict=True):
        assert str(path) in message and f"item {item}" in message and "victim.jpg" in message


@pytest.mark.parametrize(("what", "spoil", "kind"), BAD_FILES[:4], ids=IDS[:4])
def test_llava_reader_refuses_the_same_image(llava, tmp_path, what, spoil, kind):
    _, folder = llava
    spoil(folder / "victim.jpg", tmp_path / "outside.jpg")
    with pytest.raises(ImageError, match=r"sample bad1: .*victim\.jpg") as info:
        load_image(folder / "victim.jpg", "bad1", max_pixels=89478485)  # LlavaDataset's reader
    assert info.value.kind == kind
    assert isinstance(info.value, OSError)  # as Pillow's own errors, for callers catching those


def test_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(bomb_png())
    assert path.stat().st_size < 200_000
    started = time.perf_counter()
    for limit in (None, 89478485, 178956970):
        with pytest.raises(ImageError, match="bomb.png") as info:
            decode_image(path, max_pixels=limit, item="x")
        assert info.value.kind == "oversized image"
    assert time.perf_counter() - started < 2.0  # header only: 400M pixels were never decoded


def test_configured_pixel_limit_is_applied(llava):
    path, folder = llava
    report = check_llava(path, folder, Report("instruct"), max_pixels=32 * 24 - 1)
    assert len(report.problems["oversized image"]) == 3
    assert "data.max_image_pixels" in report.problems["oversized image"][0]
    assert not check_llava(path, folder, Report("instruct"), max_pixels=32 * 24).bad


def test_llava_json_nested_200000_deep_is_named(tmp_path):
    path = tmp_path / "blip_laion_cc_sbu_558k.json"
    path.write_text(DEEP_JSON)
    with pytest.raises(DataError, match="nested too deeply") as info:
        read_llava_json(path)
    assert str(path) in str(info.value)
    report = check_llava(path, tmp_path, Report("pretrain"))
    assert report.problems["unreadable JSON"] and str(path) in report.summary()


# ---- SPair-71k (fixtures demo_data, spair_config: conftest.py) ----------------------------------
@pytest.mark.parametrize(("what", "spoil", "kind"), BAD_FILES, ids=IDS)
def test_check_spair_reports_a_bad_image_by_file_and_item(
    spair_config, tmp_path, what, spoil, kind
):
    root = tmp_path / "SPair-71k"
    victim = sorted((root / "JPEGImages").rglob("*.jpg"))[0]
    image_id = f"{victim.parent.name}/{victim.name}"
    spoil(victim, tmp_path / "outside.jpg")
    report = check_dataset(spair_config, "spair")  # crashed on the bomb, passed the others
    assert len(report.problems[kind]) == 1, report.summary()
    message = report.problems[kind][0]
    assert image_id in message
    assert str(spair.image_annotation_path(root, image_id)) in message
    assert report.problems["pair with a bad image"]  # every pair using it is counted
    assert set(report.problems) == {kind, "pair with a bad image"}, report.summary()


@pytest.mark.parametrize(("what", "spoil", "kind"), BAD_FILES, ids=IDS)
def test_feature_reader_refuses_the_same_spair_image(spair_config, tmp_path, what, spoil, kind):
    folder = tmp_path / "SPair-71k" / "JPEGImages"
    victim = sorted(folder.rglob("*.jpg"))[0]
    image_id = f"{victim.parent.name}/{victim.name}"
    read_image(folder, image_id, 89478485)  # the good file reads
    spoil(victim, tmp_path / "outside.jpg")
    with pytest.raises(DataError, match=image_id) as info:
        read_image(folder, image_id, 89478485)  # what extract_features reads each image with
    if isinstance(info.value, ImageError):
        assert info.value.kind == kind
    else:
        assert kind == "image path escapes its folder" and "link out of" in str(info.value)


def test_spair_pixel_limit_comes_from_the_config(spair_config):
    data = {**spair_config["data"], "max_image_pixels": 100}
    report = check_dataset({**spair_config, "data": data}, "spair")
    assert report.problems["oversized image"] and "over the limit 100" in report.summary()


def test_spair_json_nested_200000_deep_is_named(spair_config, tmp_path):
    root = tmp_path / "SPair-71k"
    victim = spair.pair_files(root, "test")[0]
    victim.write_text(DEEP_JSON)
    report = check_dataset(spair_config, "spair")
    assert len(report.problems["bad pair annotation"]) == 1
    assert f"{victim}: JSON nested too deeply" in report.problems["bad pair annotation"][0]
    with pytest.raises(spair.SpairFormatError, match="nested too deeply"):
        spair.load_pairs(root, "test")


@pytest.mark.parametrize(("what", "spoil", "kind"), BAD_FILES[:4], ids=IDS[:4])
def test_scoring_readers_refuse_the_same_image(llava, tmp_path, what, spoil, kind):
    """The benchmark reader (lmms-eval's doc_to_visual; the A score's image sample is saved from
    it and read back with read_rgb) and LMVR's reader decode with the same checks."""
    from vislaw.data.imagefolder import LabelledImage
    from vislaw.eval.task_utils import doc_to_visual
    from vislaw.lmvr.extract import load_image as lmvr_image

    _, folder = llava
    spoil(folder / "victim.jpg", tmp_path / "outside.jpg")
    doc = {"question_id": 17, "image": "victim.jpg"}
    with pytest.raises(ImageError, match=r"item 17: .*victim\.jpg") as info:
        doc_to_visual(doc, {"image_root": str(folder)})
    assert info.value.kind == kind
    item = LabelledImage("cat/victim.jpg", "cat", folder / "victim.jpg")
    with pytest.raises(ImageError, match=r"item cat/victim\.jpg: .*victim\.jpg") as info:
        lmvr_image(item)
    assert info.value.kind == kind


def test_a_truncated_image_is_refused_after_lmms_eval_switched_truncation_on(tmp_path):
    """lmms-eval's import sets Pillow's process-wide LOAD_TRUNCATED_IMAGES (and the warm-start
    server imports it before forking every job): the check must not depend on that switch."""
    import lmms_eval.api.task  # noqa: F401  (sets LOAD_TRUNCATED_IMAGES = True)
    from PIL import ImageFile

    path = tmp_path / "cut.jpg"
    data = _noise_jpeg((64, 48))
    path.write_bytes(data[: len(data) // 2])
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    with pytest.raises(ImageError, match="cut.jpg.*truncated") as info:
        decode_image(path)
    assert info.value.kind == "truncated or corrupt image"

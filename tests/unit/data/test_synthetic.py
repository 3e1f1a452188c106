"""The demo-data generator: determinism, the real formats, and answers that are true of pixels.

The pixel checks never ask the generator what it drew: shapes are found as connected regions
that differ from the image border's colour, and their colour, quadrant, number and shape (by how
much of their bounding box they fill) are compared with what the text says.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage

import vislaw.data.synthetic as synthetic
from vislaw.config import ConfigError, check_config
from vislaw.data.object_templates import SPAIR_KPS_SLOTS
from vislaw.data.objects import Placement
from vislaw.data.shapes import COLORS, QUADRANTS
from vislaw.data.synthetic import (
    BENCHMARKS,
    MANIFEST_NAME,
    SPAIR_TEMPLATES,
    generate_demo_data,
    generate_from_config,
)

SETTINGS = {
    "image_size": 64,
    "n_pretrain": 8,
    "n_instruct": 12,
    "n_spair_images_per_category": 4,
    "n_spair_pairs_per_category": 5,
    "spair_categories": sorted(SPAIR_TEMPLATES),
    "n_benchmark_questions": 12,
}
TINY = {**SETTINGS, "n_pretrain": 3, "n_instruct": 3, "n_benchmark_questions": 2}
TINY["spair_categories"] = ["bird"]
TINY["n_spair_pairs_per_category"] = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("gen") / "data"
    manifest = generate_demo_data(root, SETTINGS, seed=3, progress=False)
    return root, manifest


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- pixel analysis ---------------------------------------------------------------------------


def _shapes_in(path: Path) -> list[dict]:
    """Regions that differ from the border colour: mean colour name, quadrant, shape by fill."""
    pixels = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    height, width = pixels.shape[:2]
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    mask = np.linalg.norm(pixels - np.median(border, axis=0), axis=-1) > 60
    labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
    found = []
    for index in range(1, n + 1):
        ys, xs = np.nonzero(labels == index)
        if len(xs) < 10:  # compression speckle, not a shape
            continue
        mean = pixels[ys, xs].mean(axis=0)
        color = min(COLORS, key=lambda c: np.linalg.norm(mean - np.array(COLORS[c])))
        cx, cy = xs.mean(), ys.mean()
        quadrant = QUADRANTS[int(cx >= width / 2) + 2 * int(cy >= height / 2)]
        fill = len(xs) / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
        shape = (
            "square"
            if fill > 0.93
            else "circle"
            if fill > 0.62
            else "triangle"
            if fill > 0.48
            else "star"
        )
        found.append(
            {"color": color, "quadrant": quadrant, "shape": shape, "center": (round(cx), round(cy))}
        )
    return found


_ITEM = re.compile(r"(?:a|an) (\w+) (\w+) at the (top left|top right|bottom left|bottom right)")


# ---- determinism and the manifest -------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = generate_demo_data(tmp_path / "a", TINY, seed=5, progress=False)
    b = generate_demo_data(tmp_path / "b", TINY, seed=5, progress=False)
    c = generate_demo_data(tmp_path / "c", TINY, seed=6, progress=False)
    tree_a, tree_b, tree_c = (_tree(tmp_path / x) for x in "abc")
    assert tree_a == tree_b
    assert a == b
    differing = [k for k in a["files"] if a["files"][k] != c["files"].get(k)]
    assert any(k.endswith(".jpg") for k in differing) and any(k.endswith(".png") for k in differing)
    assert tree_a[MANIFEST_NAME] != tree_c[MANIFEST_NAME]


def test_items_do_not_depend_on_the_other_counts(tmp_path):
    """Each item has its own stream: more pretrain samples leave SPair and benchmarks alone."""
    small = generate_demo_data(tmp_path / "s", TINY, seed=5, progress=False)
    more = generate_demo_data(tmp_path / "m", {**TINY, "n_pretrain": 5}, seed=5, progress=False)
    for key, digest in small["files"].items():
        if not key.startswith("pretrain/") or key.endswith(".jpg"):
            assert more["files"][key] == digest, key


def test_manifest_lists_every_file_with_its_hash(demo):
    root, manifest = demo
    on_disk = {k: hashlib.sha256(v).hexdigest() for k, v in _tree(root).items()}
    on_disk.pop(MANIFEST_NAME)
    on_disk.pop(synthetic.MARKER_NAME)
    assert manifest["files"] == on_disk
    assert json.loads((root / MANIFEST_NAME).read_text()) == manifest
    assert manifest["seed"] == 3 and manifest["settings"]["n_pretrain"] == 8
    assert manifest["pretrain"]["samples"] == 8 and manifest["instruct"]["samples"] == 12
    assert manifest["benchmarks"] == {name: 12 for name in BENCHMARKS}
    assert manifest["spair"]["pairs"]["test"] == 5 * len(SPAIR_TEMPLATES)


# ---- LLaVA formats ----------------------------------------------------------------------------


def test_pretrain_captions_describe_the_pixels(demo):
    root, _ = demo
    records = json.loads((root / "pretrain/blip_laion_cc_sbu_558k.json").read_text())
    assert len(records) == 8
    assert len({r["id"] for r in records}) == 8
    for record in records:
        assert set(record) == {"id", "image", "conversations"}
        human, gpt = record["conversations"]
        assert human["from"] == "human" and gpt["from"] == "gpt"
        assert human["value"].startswith("<image>\n") and human["value"].count("<image>") == 1
        described = sorted(_ITEM.findall(gpt["value"]))
        assert described, gpt["value"]
        seen = sorted(
            (s["color"], s["shape"], s["quadrant"])
            for s in _shapes_in(root / "pretrain/images" / record["image"])
        )
        assert seen == described, (record["image"], gpt["value"])


def test_instruct_conversations_and_text_only_samples(demo):
    root, manifest = demo
    records = json.loads((root / "instruct/llava_v1_5_mix665k.json").read_text())
    text_only = [r for r in records if "image" not in r]
    assert len(text_only) == manifest["instruct"]["text_only"] >= 1
    for record in records:
        turns = record["conversations"]
        assert len(turns) >= 2 and len(turns) % 2 == 0
        assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
        joined = "".join(t["value"] for t in turns)
        if "image" in record:
            assert (root / "instruct/images" / record["image"]).is_file()
            assert turns[0]["value"].startswith("<image>\n") and joined.count("<image>") == 1
        else:
            assert "<image>" not in joined
    counts = [
        (r, t["value"])
        for r in records
        if "image" in r
        for q, t in zip(r["conversations"][::2], r["conversations"][1::2], strict=True)
        if q["value"].startswith(("<image>\nHow many shapes", "How many shapes"))
        and "\n" not in q["value"].replace("<image>\n", "")
    ]
    for record, answer in counts:  # free-form count answers agree with the pixels
        n = len(_shapes_in(root / "instruct/images" / record["image"]))
        assert ["one", "two", "three", "four"][n - 1] in answer


# ---- SPair-71k --------------------------------------------------------------------------------


def _image_annotation(spair: Path, category: str, name: str) -> dict:
    return json.loads(
        (spair / "ImageAnnotation" / category / f"{Path(name).stem}.json").read_text()
    )


def test_spair_pairs_agree_with_images_and_layout(demo):
    root, manifest = demo
    spair = root / "SPair-71k"
    placements = manifest["spair"]["placements"]
    for split in ("trn", "val", "test"):
        names = (spair / "Layout/large" / f"{split}.txt").read_text().splitlines()
        assert names == (spair / "Layout/small" / f"{split}.txt").read_text().splitlines()
        assert len(names) == manifest["spair"]["pairs"][split]
        assert len(set(names)) == len(names)
        for name in names:
            pair = json.loads((spair / "PairAnnotation" / split / f"{name}.json").read_text())
            assert pair["filename"] == name
            pair_id, src_stem, rest = name.split("-")
            trg_stem, category = rest.split(":")
            assert int(pair_id) == pair["pair_id"] and category == pair["category"]
            assert (pair["src_imname"], pair["trg_imname"]) == (
                f"{src_stem}.jpg",
                f"{trg_stem}.jpg",
            )
            sides = {}
            for side in ("src", "trg"):
                image_name = pair[f"{side}_imname"]
                ann = _image_annotation(spair, category, image_name)
                with Image.open(spair / "JPEGImages" / category / image_name) as im:
                    assert pair[f"{side}_imsize"] == [im.width, im.height, 3]
                assert [ann["image_width"], ann["image_height"]] == [im.width, im.height]
                assert ann["filename"] == image_name and ann["category"] == category
                assert pair[f"{side}_bndbox"] == ann["bndbox"]
                assert [ann["kps"][k] for k in pair["kps_ids"]] == pair[f"{side}_kps"]
                sides[side] = ann
            mutual = [
                k
                for k in map(str, range(SPAIR_KPS_SLOTS))
                if sides["src"]["kps"][k] is not None and sides["trg"]["kps"][k] is not None
            ]
            assert pair["kps_ids"] == mutual and mutual
            mirrors = [
                placements[f"{category}/{pair[f'{s}_imname']}"]["mirror"] for s in ("src", "trg")
            ]
            assert pair["mirror"] == int(mirrors[0] != mirrors[1])
            assert pair["truncation"] == sides["src"]["truncated"] + 2 * sides["trg"]["truncated"]
            assert pair["occlusion"] == sides["src"]["occluded"] + 2 * sides["trg"]["occluded"]
            assert pair["viewpoint_variation"] in (0, 1, 2) and pair["scale_variation"] in (0, 1, 2)


def test_spair_keypoints_lie_on_their_parts_under_the_recorded_transform(demo):
    root, manifest = demo
    spair = root / "SPair-71k"
    n_mirrored = 0
    for image_id, recorded in manifest["spair"]["placements"].items():
        category, name = image_id.split("/")
        template = SPAIR_TEMPLATES[category]
        ann = _image_annotation(spair, category, name)
        assert list(ann["kps"]) == [str(i) for i in range(SPAIR_KPS_SLOTS)]
        width, height = ann["image_width"], ann["image_height"]
        x1, y1, x2, y2 = ann["bndbox"]
        assert 0 <= x1 < x2 <= width - 1 and 0 <= y1 < y2 <= height - 1
        pixels = np.asarray(Image.open(spair / "JPEGImages" / image_id).convert("RGB")).astype(int)
        placement = Placement(
            recorded["scale"], tuple(recorded["center"]), bool(recorded["mirror"])
        )
        n_mirrored += placement.mirror
        by_id = {kp.id: kp for kp in template.keypoints}
        visible = {k: v for k, v in ann["kps"].items() if v is not None}
        assert len(visible) >= 3
        for key, (x, y) in visible.items():
            assert 0 <= x < width and 0 <= y < height
            assert x1 <= x <= x2 and y1 <= y <= y2
            # In a mirrored image the drawn point of template keypoint k is labelled partner(k).
            drawn = by_id[template.partner(int(key)) if placement.mirror else int(key)]
            expected = np.floor(placement.apply(np.array(drawn.xy)) + 0.5)
            assert [x, y] == expected.astype(int).tolist(), (image_id, key)
            assert np.abs(pixels[y, x] - template.part_color(drawn)).max() < 48, (image_id, key)
        pose, azimuth = template.posed(placement.mirror)
        assert (ann["pose"], ann["azimuth_id"]) == (pose, azimuth)
    assert 0 < n_mirrored < len(manifest["spair"]["placements"])


def test_images_have_varied_sizes(demo):
    root, _ = demo
    sizes = {Image.open(p).size for p in (root / "SPair-71k/JPEGImages").rglob("*.jpg")}
    assert len(sizes) > 3
    assert any(w != h for w, h in sizes)


def test_templates_are_consistent():
    for category, template in SPAIR_TEMPLATES.items():
        ids = [kp.id for kp in template.keypoints]
        assert len(set(ids)) == len(ids) and max(template.keypoint_ids) < SPAIR_KPS_SLOTS
        assert len(template.keypoints) >= 5, category
        for a, b in template.symmetric_pairs:
            assert template.partner(a) == b and template.partner(b) == a
            if a in ids and b in ids:  # both drawn: one colour, so a mirror image stays true
                kp = {k.id: k for k in template.keypoints}
                assert template.part_color(kp[a]) == template.part_color(kp[b]), (category, a, b)
        assert any(template.partner(i) != i for i in ids), category


def test_every_keypoint_is_visible_when_nothing_hides_it():
    from vislaw.data.objects import render_object

    for template in SPAIR_TEMPLATES.values():
        for mirror in (False, True):
            for seed in range(20):
                placement = Placement(90.0, (110.0, 110.0), mirror)
                obj = render_object(template, placement, 220, 220, np.random.default_rng(seed))
                if not obj.occluded:
                    break
            assert obj.truncated == 0 and obj.occluded == 0
            assert obj.n_visible == len(template.keypoints), (template.category, mirror)


# ---- benchmarks -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_answers_are_true_of_the_pixels(demo, name):
    root, _ = demo
    folder = root / "benchmarks" / name
    records = _read_jsonl(folder / "questions.jsonl")
    assert len(records) == 12
    assert len({r["question_id"] for r in records}) == 12
    letters = set()
    for record in records:
        assert set(record) == {
            "question_id",
            "image",
            "question",
            "options",
            "answer",
            "answer_letter",
        }
        options = record["options"]
        assert len(options) == len(set(options)) == 4
        assert options["ABCD".index(record["answer_letter"])] == record["answer"]
        letters.add(record["answer_letter"])
        shapes = _shapes_in(folder / "images" / record["image"])
        if name == "synth_count":
            assert len(shapes) == int(record["answer"])
            continue
        (shape,) = shapes
        if name == "synth_color":
            pixels = np.asarray(Image.open(folder / "images" / record["image"]).convert("RGB"))
            cx, cy = shape["center"]
            assert tuple(pixels[cy, cx]) == COLORS[record["answer"]]
        else:
            assert (
                shape[{"synth_shape": "shape", "synth_position": "quadrant"}[name]]
                == record["answer"]
            )
    assert len(letters) > 1  # options are shuffled, the answer is not always first


# ---- atomicity, safety, settings, entry points -----------------------------------------------


def test_failure_midway_leaves_no_root(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("killed mid-generation")

    monkeypatch.setattr(synthetic, "write_benchmarks", boom)
    with pytest.raises(RuntimeError, match="mid-generation"):
        generate_demo_data(tmp_path / "data", TINY, seed=0, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_generation(tmp_path, monkeypatch):
    root = tmp_path / "data"
    generate_demo_data(root, TINY, seed=0, progress=False)
    before = _tree(root)
    monkeypatch.setattr(synthetic, "write_spair", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        generate_demo_data(root, {**TINY, "n_pretrain": 4}, seed=1, progress=False)
    assert _tree(root) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_regeneration_replaces_the_old_files(tmp_path):
    root = tmp_path / "data"
    generate_demo_data(root, {**TINY, "n_pretrain": 4}, seed=0, progress=False)
    manifest = generate_demo_data(root, TINY, seed=0, progress=False)
    assert len(list((root / "pretrain/images").rglob("*.jpg"))) == 3
    assert set(manifest["files"]) | {MANIFEST_NAME, synthetic.MARKER_NAME} == set(_tree(root))


def test_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="did not write"):
        generate_demo_data(root, TINY, seed=0, progress=False)
    assert (root / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"n_images": 3}, "data.synthetic.n_images"),
        ({"spair_categories": ["unicorn"]}, "data.synthetic.spair_categories"),
        ({"n_pretrain": 0}, "data.synthetic.n_pretrain"),
        (
            {"n_spair_images_per_category": 2, "n_spair_pairs_per_category": 3},
            "data.synthetic.n_spair_pairs_per_category",
        ),
    ],
)
def test_bad_settings_name_the_key(tmp_path, settings, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        generate_demo_data(tmp_path / "data", settings, seed=0, progress=False)
    assert not (tmp_path / "data").exists()


def _config(tmp_path: Path, **data_overrides) -> dict:
    config = {
        "run": "unit",
        "seed": 2,
        "encoders": {"clip224": {"family": "clip", "tiny": True, "input_size": 56}},
        "data": {
            "root": str(tmp_path / "data"),
            "synthetic": TINY,
            "pretrain": {
                "json": "pretrain/blip_laion_cc_sbu_558k.json",
                "image_folder": "pretrain/images",
            },
            "spair": {"root": "SPair-71k"},
            "benchmark_root": "benchmarks",
            **data_overrides,
        },
    }
    return check_config(config)


def test_config_paths_must_match_the_generated_layout(tmp_path):
    config = _config(tmp_path, spair={"root": "spair"})
    with pytest.raises(ConfigError, match=r"data\.spair\.root"):
        generate_from_config(config)
    real = _config(tmp_path)
    del real["data"]["synthetic"]
    with pytest.raises(ConfigError, match=r"data\.synthetic"):
        generate_from_config(real)


def test_cli_writes_the_config_root(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config(tmp_path)))
    run = [sys.executable, "-m", "vislaw.data.synthetic"]
    assert subprocess.run([*run, "--help"], capture_output=True).returncode == 0
    result = subprocess.run([*run, "--config", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "data" / MANIFEST_NAME).read_text())
    assert manifest["seed"] == 2 and manifest["settings"]["n_pretrain"] == 3
    assert "demo data" in result.stderr  # the progress bar


def test_data_settings_optional_sections_and_schema_defaults(project_root):
    """data.synthetic (and the other optional datasets) are None when absent; the generator's
    defaults are the schema's (no second copy in code)."""
    from vislaw.config import load_config, schema
    from vislaw.data.settings import DataSettings, SyntheticSettings

    real = DataSettings.from_config(load_config(project_root / "config.yaml"))
    assert real.synthetic is None and real.spair is not None and real.instruct is not None
    assert real.benchmark_root == "benchmarks"  # the schema default (docs/data.md)
    demo = DataSettings.from_config(load_config(project_root / "config/demo.yaml"))
    assert isinstance(demo.synthetic, SyntheticSettings)
    assert demo.synthetic.spair_categories == ("aeroplane", "bicycle", "bird")
    filled = synthetic.resolve_settings({})
    node = schema()["properties"]["data"]["properties"]["synthetic"]["properties"]
    defaults = {k: v["default"] for k, v in node.items()}
    assert filled.as_dict() == defaults

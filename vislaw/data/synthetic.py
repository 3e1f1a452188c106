"""Seeded demo data in the real formats: LLaVA-558K/665K JSON, SPair-71k, and four benchmarks.

The demo runs the paper's whole DAG on CPU in minutes, so it needs data that the real readers
accept unchanged and whose ground truth we know: coloured shapes at known places for the LLaVA
sets and the benchmarks, rigid keypoint objects under known transforms for SPair-71k. Layout
under ``root`` (see docs/data.md):

    pretrain/blip_laion_cc_sbu_558k.json, pretrain/images/...
    instruct/llava_v1_5_mix665k.json,     instruct/images/...
    SPair-71k/{JPEGImages,ImageAnnotation,PairAnnotation,Layout}/...
    benchmarks/<synth_color|synth_shape|synth_position|synth_count>/{questions.jsonl,images/}
    vislaw-demo-data.json                 (the manifest, present only when all of the above is)

Every item draws from its own random stream, seeded by (seed, dataset, index), so the same seed
and settings give byte-identical files, and growing one count leaves the other items unchanged.
Everything is written into a temporary sibling folder that is renamed to ``root`` at the end: a
killed run leaves no half-written ``root``.

CLI: ``python -m vislaw.data.synthetic --config config/demo.yaml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from vislaw.config import ConfigError, check_section
from vislaw.data.dialogue import (
    BENCHMARKS,
    PRETRAIN_INSTRUCTIONS,
    benchmark_item,
    instruct_turns,
    text_only_turns,
)
from vislaw.data.object_templates import SPAIR_TEMPLATES
from vislaw.data.objects import RenderedObject, generate_object_image
from vislaw.data.settings import DataSettings, SyntheticSettings
from vislaw.data.shapes import caption, render_scene, sample_scene
from vislaw.data.spair import (
    SPLITS,
    pair_name,
    write_image_record,
    write_layout,
    write_pair_record,
)
from vislaw.io.atomic import atomic_dir, write_text_atomic
from vislaw.layout import MANIFEST_NAME

__all__ = [
    "BENCHMARKS",
    "LAYOUT",
    "SPAIR_TEMPLATES",
    "generate_demo_data",
    "generate_from_config",
    "run_synthetic_data",
    "resolve_settings",
]

MARKER_NAME = ".vislaw-demo-data"
"""Marks a folder as ours: only such a folder (or an empty one) is ever replaced."""
MANIFEST_FORMAT = "vislaw-demo-data"
MANIFEST_VERSION = 1

LAYOUT: dict[str, Any] = {
    "pretrain": {"json": "pretrain/blip_laion_cc_sbu_558k.json", "image_folder": "pretrain/images"},
    "instruct": {"json": "instruct/llava_v1_5_mix665k.json", "image_folder": "instruct/images"},
    "spair": {"root": "SPair-71k"},
    "benchmark_root": "benchmarks",
}
"""Where the generator writes, relative to ``data.root`` (the demo config names the same)."""

SPAIR_SPLITS = SPLITS
JPEG_OPTIONS = {"format": "JPEG", "quality": 95, "subsampling": 0}
"""Fixed quality; 4:4:4 chroma keeps thin parts' colours true at their keypoints."""
PNG_OPTIONS = {"format": "PNG", "compress_level": 6}
"""Benchmark images are lossless, so their answers can be checked on exact pixels."""

_STREAMS = {"pretrain": 1, "instruct": 2, "spair_image": 3, "spair_pairs": 4, "benchmark": 5}


def item_rng(seed: int, stream: str, *index: int) -> np.random.Generator:
    """The random stream of one item: independent of every other item and of the counts."""
    return np.random.default_rng([seed, _STREAMS[stream], *index])


def _category_key(category: str) -> int:
    """A stable number per category, so adding a category leaves the others' images alone."""
    return zlib.crc32(category.encode())


# ---- settings ----------------------------------------------------------------------------------


def resolve_settings(
    settings: SyntheticSettings | Mapping[str, Any] | None,
) -> SyntheticSettings:
    """The ``data.synthetic`` model: a mapping is checked against the schema (which fills its
    defaults), then what the schema cannot say is checked. Errors name the key."""
    if not isinstance(settings, SyntheticSettings):
        checked = check_section("data.synthetic", settings or {})
        settings = SyntheticSettings.from_mapping(checked, "data.synthetic")
    categories = list(settings.spair_categories)
    for name in categories:
        if name not in SPAIR_TEMPLATES:
            raise ConfigError(
                "data.synthetic.spair_categories",
                f"no synthetic template for {name!r}; available: {sorted(SPAIR_TEMPLATES)}",
            )
    if len(set(categories)) != len(categories):
        raise ConfigError("data.synthetic.spair_categories", f"duplicate names in {categories}")
    n_images = settings.n_spair_images_per_category
    if settings.n_spair_pairs_per_category > n_images * (n_images - 1):
        raise ConfigError(
            "data.synthetic.n_spair_pairs_per_category",
            f"{n_images} images per category make at most {n_images * (n_images - 1)} ordered pairs",
        )
    return settings


def check_layout(data: DataSettings) -> None:
    """The config's dataset paths must be the ones the generator writes."""
    for key, expected in LAYOUT.items():
        entry = getattr(data, key)
        if entry is None:
            continue
        if isinstance(expected, dict):
            for sub, path in expected.items():
                if getattr(entry, sub) != path:
                    raise ConfigError(
                        f"data.{key}.{sub}",
                        f"the synthetic generator writes {path!r}, not {getattr(entry, sub)!r}",
                    )
        elif entry != expected:
            raise ConfigError(
                f"data.{key}", f"the synthetic generator writes {expected!r}, not {entry!r}"
            )


# ---- writers -----------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, options: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def _dump_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _conversation(turns: list[tuple[str, str]], with_image: bool) -> list[dict[str, str]]:
    messages = []
    for i, (question, answer) in enumerate(turns):
        value = f"<image>\n{question}" if (with_image and i == 0) else question
        messages += [{"from": "human", "value": value}, {"from": "gpt", "value": answer}]
    return messages


def write_pretrain(out: Path, settings: SyntheticSettings, seed: int, bar: tqdm) -> dict[str, int]:
    """LLaVA-Pretrain-558K style: one captioning turn per image."""
    folder = out / LAYOUT["pretrain"]["image_folder"]
    records = []
    for i in range(settings.n_pretrain):
        rng = item_rng(seed, "pretrain", i)
        scene = sample_scene(rng, settings.image_size, int(rng.integers(1, 4)))
        sample_id = f"{i:09d}"
        rel = f"{sample_id[:5]}/{sample_id}.jpg"
        _save(render_scene(scene, rng), folder / rel, JPEG_OPTIONS)
        instruction = PRETRAIN_INSTRUCTIONS[int(rng.integers(len(PRETRAIN_INSTRUCTIONS)))]
        records.append(
            {
                "id": sample_id,
                "image": rel,
                "conversations": _conversation([(instruction, caption(scene))], with_image=True),
            }
        )
        bar.update()
    _dump_json(out / LAYOUT["pretrain"]["json"], records)
    return {"samples": len(records)}


def text_only_indices(n: int) -> set[int]:
    """About one sample in ten is text-only (at least one once there are two samples)."""
    n_text = max(1, n // 10) if n >= 2 else 0
    step = n // n_text if n_text else 0
    return {(k + 1) * step - 1 for k in range(n_text)}


def write_instruct(out: Path, settings: SyntheticSettings, seed: int, bar: tqdm) -> dict[str, int]:
    """LLaVA-1.5-665K style: multi-turn QA about an image, plus a few text-only samples."""
    folder = out / LAYOUT["instruct"]["image_folder"]
    text_only = text_only_indices(settings.n_instruct)
    records = []
    for i in range(settings.n_instruct):
        rng = item_rng(seed, "instruct", i)
        if i in text_only:
            turns = text_only_turns(rng)
            records.append({"id": f"text_{i:06d}", "conversations": _conversation(turns, False)})
        else:
            scene = sample_scene(rng, settings.image_size, int(rng.integers(1, 5)))
            sample_id = f"{i:012d}"
            rel = f"shapes/{sample_id}.jpg"
            _save(render_scene(scene, rng), folder / rel, JPEG_OPTIONS)
            turns = instruct_turns(scene, rng)
            records.append(
                {"id": sample_id, "image": rel, "conversations": _conversation(turns, True)}
            )
        bar.update()
    _dump_json(out / LAYOUT["instruct"]["json"], records)
    return {"samples": len(records), "text_only": len(text_only)}


def _image_annotation(category: str, stem: str, obj: RenderedObject) -> dict[str, Any]:
    """The fields of a real SPair-71k ImageAnnotation file, in its order."""
    pose, azimuth = SPAIR_TEMPLATES[category].posed(obj.placement.mirror)
    return {
        "filename": f"{stem}.jpg",
        "src_database": "vislaw-synthetic",
        "src_annotation": "vislaw.data.object_templates",
        "src_image": f"{category}/{stem}.jpg",
        "image_width": obj.image.width,
        "image_height": obj.image.height,
        "image_depth": 3,
        "category": category,
        "pose": pose,
        "truncated": obj.truncated,
        "occluded": obj.occluded,
        "difficult": 0,
        "bndbox": obj.bndbox,
        "kps": obj.kps,
        "azimuth_id": azimuth,
    }


def _variation(ratio: float, medium: float, hard: float) -> int:
    return 0 if ratio < medium else (1 if ratio < hard else 2)


def _pair_annotation(
    pair_id: int, category: str, src: dict[str, Any], trg: dict[str, Any]
) -> dict[str, Any]:
    """A PairAnnotation record: mutually visible keypoints in ascending id order, and the
    difficulty flags computed from the two ImageAnnotations (see docs/data.md)."""
    ids = sorted(
        (k for k in src["kps"] if src["kps"][k] is not None and trg["kps"][k] is not None),
        key=int,
    )
    azimuth_gap = abs(src["azimuth_id"] - trg["azimuth_id"]) % 8
    azimuth_gap = min(azimuth_gap, 8 - azimuth_gap)

    def box_side(box: list[int]) -> int:
        return max(box[2] - box[0], box[3] - box[1], 1)

    sides = sorted([box_side(src["bndbox"]), box_side(trg["bndbox"])])
    return {
        "filename": pair_name(pair_id, src["filename"], trg["filename"], category),
        "src_imname": src["filename"],
        "trg_imname": trg["filename"],
        "src_imsize": [src["image_width"], src["image_height"], 3],
        "trg_imsize": [trg["image_width"], trg["image_height"], 3],
        "src_bndbox": src["bndbox"],
        "trg_bndbox": trg["bndbox"],
        "category": category,
        "src_pose": src["pose"],
        "trg_pose": trg["pose"],
        "src_kps": [src["kps"][k] for k in ids],
        "trg_kps": [trg["kps"][k] for k in ids],
        "mirror": int(src["mirror"] != trg["mirror"]),
        "viewpoint_variation": 0 if azimuth_gap == 0 else (1 if azimuth_gap <= 2 else 2),
        "scale_variation": _variation(sides[1] / sides[0], 1.25, 1.6),
        "truncation": src["truncated"] + 2 * trg["truncated"],
        "occlusion": src["occluded"] + 2 * trg["occluded"],
        "pair_id": pair_id,
        "kps_ids": ids,
    }


def write_spair(out: Path, settings: SyntheticSettings, seed: int, bar: tqdm) -> dict[str, Any]:
    """SPair-71k's layout: images, per-image and per-pair annotations, split lists."""
    root = out / LAYOUT["spair"]["root"]
    n_images, n_pairs = (
        settings.n_spair_images_per_category,
        settings.n_spair_pairs_per_category,
    )
    placements: dict[str, Any] = {}
    split_stems: dict[str, list[str]] = {split: [] for split in SPAIR_SPLITS}
    for category in settings.spair_categories:
        template = SPAIR_TEMPLATES[category]
        annotations = []
        for i in range(n_images):
            rng = item_rng(seed, "spair_image", _category_key(category), i)
            obj = generate_object_image(template, rng, settings.image_size)
            stem = f"{category}_{i + 1:06d}"
            _save(obj.image, root / "JPEGImages" / category / f"{stem}.jpg", JPEG_OPTIONS)
            annotation = _image_annotation(category, stem, obj)
            write_image_record(root, f"{category}/{stem}.jpg", annotation)
            placements[f"{category}/{stem}.jpg"] = obj.placement.to_json()
            # Carried for pair flags only; not part of the written ImageAnnotation.
            annotations.append({**annotation, "mirror": obj.placement.mirror})
            bar.update()
        candidates = [
            (a, b)
            for a in range(n_images)
            for b in range(n_images)
            if a != b
            and any(
                annotations[a]["kps"][k] is not None and annotations[b]["kps"][k] is not None
                for k in annotations[a]["kps"]
            )
        ]
        if len(candidates) < n_pairs:
            raise ConfigError(
                "data.synthetic.n_spair_pairs_per_category",
                f"only {len(candidates)} {category} pairs share a visible keypoint; "
                f"ask for fewer pairs or more images",
            )
        shuffle = item_rng(seed, "spair_pairs", _category_key(category)).permutation(
            len(candidates)
        )
        order = [candidates[int(j)] for j in shuffle]
        extra = max(1, n_pairs // 2)
        chosen = {
            "test": order[:n_pairs],
            "trn": order[n_pairs : n_pairs + extra],
            "val": order[n_pairs + extra : n_pairs + 2 * extra],
        }
        for split in SPAIR_SPLITS:
            for a, b in chosen[split]:
                pair_id = len(split_stems[split]) + 1
                record = _pair_annotation(pair_id, category, annotations[a], annotations[b])
                write_pair_record(root, split, record)
                split_stems[split].append(record["filename"])
    for split in SPAIR_SPLITS:
        write_layout(root, split, split_stems[split])
    return {
        "categories": list(settings.spair_categories),
        "images_per_category": n_images,
        "pairs": {split: len(split_stems[split]) for split in SPAIR_SPLITS},
        "placements": placements,
    }


def write_benchmarks(
    out: Path, settings: SyntheticSettings, seed: int, bar: tqdm
) -> dict[str, int]:
    """One folder per benchmark: questions.jsonl (flat multiple choice) and PNG images."""
    counts = {}
    for b, name in enumerate(BENCHMARKS):
        folder = out / LAYOUT["benchmark_root"] / name
        lines = []
        for i in range(settings.n_benchmark_questions):
            rng = item_rng(seed, "benchmark", b, i)
            n_shapes = int(rng.integers(1, 5)) if name == "synth_count" else 1
            scene = sample_scene(rng, settings.image_size, n_shapes)
            rel = f"{i:05d}.png"
            _save(render_scene(scene, rng), folder / "images" / rel, PNG_OPTIONS)
            record = {
                "question_id": f"{name}_{i:05d}",
                "image": rel,
                **benchmark_item(name, scene, rng),
            }
            lines.append(json.dumps(record))
            bar.update()
        (folder / "questions.jsonl").write_text("\n".join(lines) + "\n")
        counts[name] = len(lines)
    return counts


# ---- the folder as a whole ---------------------------------------------------------------------


def _file_hashes(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in (MANIFEST_NAME, MARKER_NAME):
            hashes[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that holds anything but an earlier generation."""
    if not root.exists():
        return
    if not root.is_dir():
        raise FileExistsError(f"data.root {root} exists and is not a folder")
    if any(root.iterdir()) and not (root / MARKER_NAME).exists():
        raise FileExistsError(
            f"data.root {root} holds files the demo generator did not write (no {MARKER_NAME}); "
            "refusing to replace it: point data.root at a new folder"
        )


def generate_demo_data(
    root: str | Path,
    settings: SyntheticSettings | Mapping[str, Any] | None,
    seed: int,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Write the demo datasets under ``root`` (replacing an earlier generation) and return the
    manifest, which is also written, last, to ``<root>/vislaw-demo-data.json``."""
    settings = resolve_settings(settings)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", f"must be a non-negative integer, got {seed!r}")
    root = Path(root)
    _check_replaceable(root)
    total = (
        settings.n_pretrain
        + settings.n_instruct
        + settings.n_spair_images_per_category * len(settings.spair_categories)
        + settings.n_benchmark_questions * len(BENCHMARKS)
    )
    with atomic_dir(root) as tmp:
        (tmp / MARKER_NAME).write_text("written by vislaw.data.synthetic; safe to replace\n")
        with tqdm(total=total, desc="demo data", unit="item", disable=not progress) as bar:
            manifest: dict[str, Any] = {
                "format": MANIFEST_FORMAT,
                "version": MANIFEST_VERSION,
                "seed": seed,
                "settings": settings.as_dict(),
                "layout": LAYOUT,
                "pretrain": write_pretrain(tmp, settings, seed, bar),
                "instruct": write_instruct(tmp, settings, seed, bar),
                "spair": write_spair(tmp, settings, seed, bar),
                "benchmarks": write_benchmarks(tmp, settings, seed, bar),
            }
        manifest["files"] = _file_hashes(tmp)
        write_text_atomic(tmp / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    return manifest


def run_synthetic_data(
    data: DataSettings,
    seed: int,
    *,
    root: str | Path | None = None,
    manifest: str | Path | None = None,
) -> dict[str, Any]:
    """Step ``synthetic_data``: generate ``data.synthetic`` into ``root`` (default
    ``data.root``). ``manifest``: the path the caller (the rule) expects the manifest at; it
    must be the generator's and must exist afterwards."""
    if data.synthetic is None:
        raise ConfigError(
            "data.synthetic", "missing: this config uses real data, nothing to generate"
        )
    check_layout(data)
    target = Path(root if root is not None else data.root)
    if manifest is not None and Path(manifest).resolve() != (target / MANIFEST_NAME).resolve():
        raise ValueError(
            f"rule output {manifest} is not the generator's manifest {target / MANIFEST_NAME}"
        )
    result = generate_demo_data(target, data.synthetic, seed)
    if manifest is not None and not Path(manifest).is_file():
        raise FileNotFoundError(f"the generator finished but {manifest} is missing")
    return result


def generate_from_config(
    config: Mapping[str, Any], *, root: str | Path | None = None, seed: int | None = None
) -> dict[str, Any]:
    """Generate from a checked config (``data.synthetic``, ``data.root``, ``seed``)."""
    data = DataSettings.from_config(config)
    return run_synthetic_data(data, config["seed"] if seed is None else seed, root=root)


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.config import load_config

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.data.synthetic",
        description="Write the seeded demo datasets (LLaVA-558K/665K, SPair-71k, synthetic "
        "benchmarks) described by a config's data.synthetic section into data.root.",
    )
    parser.add_argument("--config", required=True, help="workflow config YAML with data.synthetic")
    parser.add_argument("--root", help="write here instead of the config's data.root")
    parser.add_argument("--seed", type=int, help="use this seed instead of the config's seed")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    manifest = generate_from_config(config, root=args.root, seed=args.seed)
    target = Path(args.root if args.root is not None else config["data"]["root"])
    print(
        f"wrote {len(manifest['files'])} files to {target} "
        f"(pretrain {manifest['pretrain']['samples']}, instruct {manifest['instruct']['samples']}, "
        f"SPair pairs {manifest['spair']['pairs']}, benchmarks {manifest['benchmarks']})"
    )


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

"""Reader for SPair-71k (Min et al., 2019) in its released layout.

::

    SPair-71k/
      JPEGImages/<category>/<image>.jpg
      ImageAnnotation/<category>/<image stem>.json   all keypoint slots of one image
      PairAnnotation/<split>/<pair name>.json         one source/target pair
      Layout/large/<split>.txt                        pair names of a split (optional here)

A pair JSON holds ``src_imname``/``trg_imname``, ``src_imsize``/``trg_imsize`` (width, height,
depth), ``src_bndbox``/``trg_bndbox`` (x1, y1, x2, y2), ``src_kps``/``trg_kps`` (the mutually
visible keypoints, in ``kps_ids`` order), ``category`` and ``mirror``. An image JSON holds
``image_width``, ``image_height``, ``bndbox``, ``category`` and ``kps``: a mapping from slot id
("0" ... "29") to [x, y] or null when the part is not visible.

Coordinates are pixels of the original image, x to the right and y down, used as annotated.
Every malformed or missing file raises :class:`SpairFormatError`, whose message names the file,
so a broken download (or a broken demo generator) is found at the file, not deep in scoring.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

SPAIR_CATEGORIES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "train",
    "tvmonitor",
)
SPLITS: tuple[str, ...] = ("trn", "val", "test")
MAX_KEYPOINTS = 30  # keypoint slots per image in the release

_PAIR_KEYS = (
    "src_imname",
    "trg_imname",
    "src_imsize",
    "trg_imsize",
    "src_bndbox",
    "trg_bndbox",
    "src_kps",
    "trg_kps",
    "kps_ids",
    "category",
)
_IMAGE_KEYS = ("image_width", "image_height", "bndbox", "category", "kps")


class SpairFormatError(ValueError):
    """A missing or malformed SPair-71k file; the message starts with the file's path."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True, eq=False)
class SpairImage:
    """One image's annotation: every keypoint slot, NaN where the part is not visible."""

    category: str
    name: str  # file name inside JPEGImages/<category>/
    width: int
    height: int
    bbox: np.ndarray  # (4,) x1, y1, x2, y2
    kps: np.ndarray  # (MAX_KEYPOINTS, 2), NaN rows for absent slots

    @property
    def image_id(self) -> str:
        """``<category>/<file>``: the id of this image in feature files."""
        return f"{self.category}/{self.name}"

    @property
    def visible(self) -> np.ndarray:
        """(MAX_KEYPOINTS,) bool: slot annotated in this image."""
        return ~np.isnan(self.kps[:, 0])


@dataclass(frozen=True, eq=False)
class SpairPair:
    """One source/target pair with its mutually visible keypoints.

    ``src_kps[i]`` and ``trg_kps[i]`` are the same part, slot ``kps_ids[i]``. ``trg_visible``
    (from the target's image annotation) lists every slot visible in the target, which the
    geo-aware subset needs (a keypoint whose symmetric partner is also visible in the target).
    """

    pair_id: int
    name: str  # pair file stem
    category: str
    src_name: str
    trg_name: str
    src_size: tuple[int, int]  # (width, height)
    trg_size: tuple[int, int]
    src_bbox: np.ndarray  # (4,) x1, y1, x2, y2
    trg_bbox: np.ndarray
    src_kps: np.ndarray  # (K, 2)
    trg_kps: np.ndarray  # (K, 2)
    kps_ids: np.ndarray  # (K,) int slot ids
    mirror: bool = False
    trg_visible: np.ndarray | None = None  # (MAX_KEYPOINTS,) bool, None if not loaded
    flags: Mapping[str, int] = field(default_factory=dict)  # viewpoint/scale variation, ...

    @property
    def src_id(self) -> str:
        return f"{self.category}/{self.src_name}"

    @property
    def trg_id(self) -> str:
        return f"{self.category}/{self.trg_name}"

    @property
    def n_points(self) -> int:
        return int(self.kps_ids.shape[0])


# ---- parsing helpers (each raises SpairFormatError naming the file) -----------------------------
def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpairFormatError(path, "file not found")
    try:
        with path.open() as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SpairFormatError(path, f"not valid JSON ({err})") from err
    except RecursionError:
        raise SpairFormatError(path, "JSON nested too deeply to parse") from None
    if not isinstance(data, dict):
        raise SpairFormatError(path, f"expected a JSON object, got {type(data).__name__}")
    return data


def _require(data: Mapping[str, Any], keys: Iterable[str], path: Path) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise SpairFormatError(path, f"missing key(s) {missing}")


def _number(value: Any, key: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpairFormatError(path, f"'{key}': expected a finite number, got {value!r}")
    return float(value)


def _size(value: Any, key: str, path: Path) -> tuple[int, int]:
    """(width, height) from SPair's [width, height, depth]."""
    if not isinstance(value, list | tuple) or len(value) < 2:
        raise SpairFormatError(path, f"'{key}': expected [width, height, depth], got {value!r}")
    width, height = (_number(v, key, path) for v in value[:2])
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise SpairFormatError(path, f"'{key}': width and height must be positive integers")
    return int(width), int(height)


def _bbox(value: Any, key: str, path: Path) -> np.ndarray:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise SpairFormatError(path, f"'{key}': expected [x1, y1, x2, y2], got {value!r}")
    box = np.array([_number(v, key, path) for v in value], dtype=np.float64)
    if box[2] <= box[0] or box[3] <= box[1]:
        raise SpairFormatError(path, f"'{key}': empty box {value!r} (x2 <= x1 or y2 <= y1)")
    return box


def _points(value: Any, key: str, path: Path) -> np.ndarray:
    if not isinstance(value, list | tuple):
        raise SpairFormatError(path, f"'{key}': expected a list of [x, y], got {value!r}")
    points = np.zeros((len(value), 2), dtype=np.float64)
    for i, point in enumerate(value):
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise SpairFormatError(path, f"'{key}[{i}]': expected [x, y], got {point!r}")
        points[i] = [_number(v, f"{key}[{i}]", path) for v in point]
    return points


KEYPOINT_TOLERANCE = 1.0
"""Pixels by which a pair's keypoint may differ from its image annotation (rounding)."""


def check_inside(points: np.ndarray, size: tuple[float, float], key: str, path: Path) -> None:
    """Keypoints (N, 2) or a box (4,) must lie in the image, 0 <= x <= width and
    0 <= y <= height (SPair's pixel coordinates reach the border, 1-based as in PASCAL VOC)."""
    width, height = size
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    outside = (xy[:, 0] < 0) | (xy[:, 0] > width) | (xy[:, 1] < 0) | (xy[:, 1] > height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise SpairFormatError(
            path,
            f"'{key}': {xy[i].tolist()} lies outside the {int(width)}x{int(height)} image "
            f"({int(outside.sum())} point(s) outside)",
        )


def _slot(value: Any, key: str, path: Path) -> int:
    try:
        slot = int(value)
    except (TypeError, ValueError):
        raise SpairFormatError(path, f"'{key}': keypoint id {value!r} is not an integer") from None
    if not 0 <= slot < MAX_KEYPOINTS or (isinstance(value, float) and value != slot):
        raise SpairFormatError(
            path, f"'{key}': keypoint id {value!r} outside 0..{MAX_KEYPOINTS - 1}"
        )
    return slot


def _category(value: Any, path: Path) -> str:
    if value not in SPAIR_CATEGORIES:
        raise SpairFormatError(path, f"'category': {value!r} is not one of {SPAIR_CATEGORIES}")
    return str(value)


def _flag(value: Any, key: str, path: Path) -> int:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int):
        raise SpairFormatError(path, f"'{key}': expected an integer flag, got {value!r}")
    return value


# ---- images -------------------------------------------------------------------------------------
def parse_image_annotation(data: Mapping[str, Any], path: Path, name: str) -> SpairImage:
    """Check and convert one ImageAnnotation JSON (already loaded) into a :class:`SpairImage`."""
    _require(data, _IMAGE_KEYS, path)
    category = _category(data["category"], path)
    width = _number(data["image_width"], "image_width", path)
    height = _number(data["image_height"], "image_height", path)
    if width < 1 or height < 1:
        raise SpairFormatError(path, "'image_width'/'image_height' must be positive")
    raw = data["kps"]
    if isinstance(raw, list):  # also accept a plain list of slots
        raw = {str(i): v for i, v in enumerate(raw)}
    if not isinstance(raw, dict):
        raise SpairFormatError(path, f"'kps': expected {{id: [x, y] or null}}, got {raw!r}")
    kps = np.full((MAX_KEYPOINTS, 2), np.nan)
    for key, point in raw.items():
        slot = _slot(key, "kps", path)
        if point is None:
            continue
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise SpairFormatError(path, f"'kps.{key}': expected [x, y] or null, got {point!r}")
        kps[slot] = [_number(v, f"kps.{key}", path) for v in point]
    bbox = _bbox(data["bndbox"], "bndbox", path)
    check_inside(bbox, (width, height), "bndbox", path)
    visible = ~np.isnan(kps[:, 0])
    check_inside(kps[visible], (width, height), "kps", path)
    return SpairImage(
        category=category,
        name=name,
        width=int(width),
        height=int(height),
        bbox=bbox,
        kps=kps,
    )


def image_annotation_path(root: str | Path, image_id: str) -> Path:
    """ImageAnnotation/<category>/<stem>.json for an image id ``<category>/<file>``."""
    category, _, name = image_id.partition("/")
    return Path(root) / "ImageAnnotation" / category / f"{Path(name).stem}.json"


def load_image_annotation(root: str | Path, image_id: str) -> SpairImage:
    """The annotation of one image, by its id ``<category>/<file>.jpg``."""
    path = image_annotation_path(root, image_id)
    image = parse_image_annotation(_read_json(path), path, image_id.partition("/")[2])
    if image.image_id != image_id:
        raise SpairFormatError(path, f"'category' {image.category!r} does not match {image_id!r}")
    return image


# ---- pairs --------------------------------------------------------------------------------------
def parse_pair_annotation(data: Mapping[str, Any], path: Path) -> SpairPair:
    """Check and convert one PairAnnotation JSON (already loaded) into a :class:`SpairPair`."""
    _require(data, _PAIR_KEYS, path)
    category = _category(data["category"], path)
    stem = path.stem
    if ":" in stem and stem.rsplit(":", 1)[1] != category:
        raise SpairFormatError(
            path, f"file name says {stem.rsplit(':', 1)[1]!r}, JSON {category!r}"
        )
    src_kps = _points(data["src_kps"], "src_kps", path)
    trg_kps = _points(data["trg_kps"], "trg_kps", path)
    if not isinstance(data["kps_ids"], list | tuple):
        raise SpairFormatError(path, f"'kps_ids': expected a list, got {data['kps_ids']!r}")
    ids = np.array([_slot(v, "kps_ids", path) for v in data["kps_ids"]], dtype=np.int64)
    if not len(src_kps) == len(trg_kps) == len(ids):
        raise SpairFormatError(
            path,
            f"{len(src_kps)} src_kps, {len(trg_kps)} trg_kps and {len(ids)} kps_ids: must match",
        )
    if len(set(ids.tolist())) != len(ids):
        raise SpairFormatError(path, f"'kps_ids' repeats a keypoint: {ids.tolist()}")
    for name in ("src_imname", "trg_imname"):
        if not isinstance(data[name], str) or not data[name] or "/" in data[name]:
            raise SpairFormatError(path, f"'{name}': expected a file name, got {data[name]!r}")
    flags = {
        key: _flag(data[key], key, path)
        for key in ("viewpoint_variation", "scale_variation", "truncation", "occlusion")
        if key in data
    }
    pair_id = data.get("pair_id", 0)
    src_size = _size(data["src_imsize"], "src_imsize", path)
    trg_size = _size(data["trg_imsize"], "trg_imsize", path)
    src_bbox = _bbox(data["src_bndbox"], "src_bndbox", path)
    trg_bbox = _bbox(data["trg_bndbox"], "trg_bndbox", path)
    for key, value, size in (
        ("src_kps", src_kps, src_size),
        ("trg_kps", trg_kps, trg_size),
        ("src_bndbox", src_bbox, src_size),
        ("trg_bndbox", trg_bbox, trg_size),
    ):
        check_inside(value, size, key, path)
    return SpairPair(
        pair_id=int(_number(pair_id, "pair_id", path)),
        name=stem,
        category=category,
        src_name=data["src_imname"],
        trg_name=data["trg_imname"],
        src_size=src_size,
        trg_size=trg_size,
        src_bbox=src_bbox,
        trg_bbox=trg_bbox,
        src_kps=src_kps,
        trg_kps=trg_kps,
        kps_ids=ids,
        mirror=bool(_flag(data.get("mirror", 0), "mirror", path)),
        flags=flags,
    )


def pair_files(root: str | Path, split: str) -> list[Path]:
    """The pair JSONs of a split: in ``Layout/large/<split>.txt`` order when that list exists
    (each name must have its file), else every ``PairAnnotation/<split>/*.json``, sorted."""
    if split not in SPLITS:
        raise ValueError(f"unknown SPair-71k split {split!r}; known: {SPLITS}")
    root = Path(root)
    folder = root / "PairAnnotation" / split
    layout = root / "Layout" / "large" / f"{split}.txt"
    if layout.is_file():
        names = [line.strip() for line in layout.read_text().splitlines() if line.strip()]
        files = [folder / f"{name}.json" for name in names]
        for path in files:
            if not path.is_file():
                raise SpairFormatError(path, f"listed in {layout} but not found")
    else:
        if not folder.is_dir():
            raise SpairFormatError(folder, f"no pair annotations for split '{split}'")
        files = sorted(folder.glob("*.json"))
    if not files:
        raise SpairFormatError(folder, f"split '{split}' holds no pairs")
    return files


def load_pairs(
    root: str | Path,
    split: str = "test",
    *,
    categories: Sequence[str] | None = None,
    with_images: bool = True,
) -> list[SpairPair]:
    """Every pair of a split (optionally of some categories only).

    With ``with_images`` each pair also gets ``trg_visible`` from the target's ImageAnnotation,
    and the pair's sizes and keypoints are checked against both images' annotations, so a
    mismatch between the two files is reported (naming both) instead of silently scored.
    """
    if categories is not None:
        unknown = sorted(set(categories) - set(SPAIR_CATEGORIES))
        if unknown:
            raise ValueError(f"unknown SPair-71k categories {unknown}")
    pairs = []
    images: dict[str, SpairImage] = {}
    for path in pair_files(root, split):
        pair = parse_pair_annotation(_read_json(path), path)
        if categories is not None and pair.category not in categories:
            continue
        if with_images:
            for image_id in (pair.src_id, pair.trg_id):
                if image_id not in images:
                    images[image_id] = load_image_annotation(root, image_id)
            _check_against_images(pair, images[pair.src_id], images[pair.trg_id], root, path)
            pair = _with_visibility(pair, images[pair.trg_id].visible)
        pairs.append(pair)
    return pairs


def _with_visibility(pair: SpairPair, visible: np.ndarray) -> SpairPair:
    return replace(pair, trg_visible=visible.copy())


def _check_against_images(
    pair: SpairPair, src: SpairImage, trg: SpairImage, root: str | Path, path: Path
) -> None:
    for side, image, size in (("src", src, pair.src_size), ("trg", trg, pair.trg_size)):
        other = image_annotation_path(root, image.image_id)
        if (image.width, image.height) != size:
            raise SpairFormatError(
                path,
                f"{side}_imsize {size} differs from {other}: ({image.width}, {image.height})",
            )
        if not image.visible[pair.kps_ids].all():
            absent = pair.kps_ids[~image.visible[pair.kps_ids]].tolist()
            raise SpairFormatError(path, f"{side} keypoints {absent} are null in {other}")
        points = pair.src_kps if side == "src" else pair.trg_kps
        off = np.abs(points - image.kps[pair.kps_ids]).max(axis=1)
        if (off > KEYPOINT_TOLERANCE).any():
            i = int(np.argmax(off))
            raise SpairFormatError(
                path,
                f"{side}_kps[{i}] (keypoint {int(pair.kps_ids[i])}) is {points[i].tolist()}, "
                f"but {other} has {image.kps[pair.kps_ids[i]].tolist()}",
            )


# ---- writers (the same layout, for generators and test fixtures) ---------------------------------
def image_annotation_json(image: SpairImage) -> dict[str, Any]:
    """The ImageAnnotation JSON of an image: every slot, null where not visible."""
    return {
        "filename": image.name,
        "category": image.category,
        "image_width": int(image.width),
        "image_height": int(image.height),
        "image_depth": 3,
        "bndbox": [float(v) for v in image.bbox],
        "kps": {
            str(i): None if np.isnan(xy[0]) else [float(xy[0]), float(xy[1])]
            for i, xy in enumerate(image.kps)
        },
    }


def pair_annotation_json(pair: SpairPair) -> dict[str, Any]:
    """The PairAnnotation JSON of a pair."""
    return {
        "pair_id": int(pair.pair_id),
        "filename": pair.name,
        "src_imname": pair.src_name,
        "trg_imname": pair.trg_name,
        "src_imsize": [int(pair.src_size[0]), int(pair.src_size[1]), 3],
        "trg_imsize": [int(pair.trg_size[0]), int(pair.trg_size[1]), 3],
        "src_bndbox": [float(v) for v in pair.src_bbox],
        "trg_bndbox": [float(v) for v in pair.trg_bbox],
        "category": pair.category,
        "src_kps": pair.src_kps.tolist(),
        "trg_kps": pair.trg_kps.tolist(),
        "kps_ids": [str(int(i)) for i in pair.kps_ids],
        "mirror": int(pair.mirror),
        **{k: int(v) for k, v in pair.flags.items()},
    }


def pair_name(pair_id: int, src_name: str, trg_name: str, category: str) -> str:
    """The release's pair file stem: ``<pair_id>-<src stem>-<trg stem>:<category>``."""
    return f"{pair_id:06d}-{Path(src_name).stem}-{Path(trg_name).stem}:{category}"


LAYOUT_SIZES = ("large", "small")
"""The release lists each split twice (``Layout/large``, ``Layout/small``); readers use large."""


def _write_json(path: Path, record: Mapping[str, Any]) -> Path:
    """Every SPair file this project writes has one format (indented JSON, newline-ended)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def write_image_record(root: str | Path, image_id: str, record: Mapping[str, Any]) -> Path:
    """``ImageAnnotation/<category>/<stem>.json`` of image ``<category>/<file>``: ``record``
    as given (a generator may add the release's extra keys: pose, azimuth_id, ...)."""
    return _write_json(image_annotation_path(root, image_id), record)


def write_pair_record(root: str | Path, split: str, record: Mapping[str, Any]) -> Path:
    """``PairAnnotation/<split>/<filename>.json`` (``record["filename"]`` is the pair name,
    :func:`pair_name`)."""
    return _write_json(Path(root) / "PairAnnotation" / split / f"{record['filename']}.json", record)


def write_image_annotation(root: str | Path, image: SpairImage) -> Path:
    return write_image_record(root, image.image_id, image_annotation_json(image))


def write_pair_annotation(root: str | Path, split: str, pair: SpairPair) -> Path:
    return write_pair_record(root, split, pair_annotation_json(pair))


def write_layout(root: str | Path, split: str, pairs: Sequence[SpairPair | str]) -> Path:
    """``Layout/{large,small}/<split>.txt``: the split's pair names (or pairs), one a line;
    returns the large list, the one readers use."""
    names = [p if isinstance(p, str) else p.name for p in pairs]
    paths = [Path(root) / "Layout" / size / f"{split}.txt" for size in LAYOUT_SIZES]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{name}\n" for name in names))
    return paths[0]

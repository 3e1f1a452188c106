"""``check_data``: validate a dataset once, before training or scoring, and report every bad item.

The checks are the readers' own (vislaw.data.llava._sample and load_records, vislaw.data.images
.image_path, vislaw.data.spair's parsers and cross-checks): the check catches each item's error
and goes on, so the report names every bad item by file and id and counts them by kind, while a
reader stops at the first. On top, it looks for what a reader only meets mid-run: every image a
JSON references exists (a missing 665K image would crash stage 2 mid-epoch, and its retry the
same way), and each SPair image has the size its annotation says. Every image is decoded
whole, as the readers decode it (vislaw.data.images.decode_image): a 0-byte, truncated, corrupt,
oversized (``data.max_image_pixels``: decompression bombs) or unsupported file is reported by
kind, with its file and item, before any GPU time is spent; so is a JSON nested too deeply to
parse.

CLI: ``python -m vislaw.data.check --config config.yaml --dataset instruct --out report.txt``.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislaw.data.images import DataError, ImageError, decode_image, image_path
from vislaw.data.settings import DataSettings, SpairSettings
from vislaw.io.atomic import write_text_atomic

DATASETS = ("pretrain", "instruct", "spair")
"""The datasets a config may name under ``data`` that check_data validates."""
SHOWN = 20  # bad items listed per kind in the summary (the report file lists them all)
DECODE_CHUNK = 4096  # images handed to the decoding threads at a time


@dataclass
class Report:
    dataset: str
    checked: int = 0
    problems: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def add(self, kind: str, message: str) -> None:
        self.problems[kind].append(message)

    @property
    def bad(self) -> int:
        return sum(len(v) for v in self.problems.values())

    def summary(self) -> str:
        lines = [f"check_data {self.dataset}: {self.checked} item(s) checked, {self.bad} bad"]
        for kind, items in sorted(self.problems.items()):
            lines.append(f"  {kind}: {len(items)}")
            lines += [f"    {m}" for m in items[:SHOWN]]
            if len(items) > SHOWN:
                lines.append(f"    ... and {len(items) - SHOWN} more (see the report)")
        return "\n".join(lines)

    def text(self) -> str:
        lines = [f"check_data {self.dataset}: {self.checked} item(s) checked, {self.bad} bad"]
        for kind, items in sorted(self.problems.items()):
            lines.append(f"{kind}: {len(items)}")
            lines += [f"  {m}" for m in items]
        return "\n".join(lines) + "\n"

    def write_or_raise(self, out: str | Path) -> None:
        """Write the report to ``out`` when clean; otherwise write it beside (``.failed``) and
        raise DataError, so no training or scoring starts on bad data."""
        out = Path(out)
        if not self.bad:
            write_text_atomic(out, self.text())
            return
        failed = out.with_name(out.name + ".failed")
        write_text_atomic(failed, self.text())
        raise DataError(f"{self.summary()}\nfull list: {failed}")


def check_llava(
    json_path: str | Path,
    image_folder: str | Path,
    report: Report,
    *,
    max_pixels: int | None = None,
    workers: int = 1,
) -> Report:
    """Every sample of a LLaVA JSON: well formed, image path inside its folder, image present
    and decoding (each file once, on ``workers`` threads: Pillow decodes without the GIL)."""
    from vislaw.data.llava import _sample, load_records

    try:
        records = load_records(json_path)
    except (DataError, FileNotFoundError) as err:
        report.add("unreadable JSON", str(err))
        return report
    folder = Path(image_folder)
    wanted: dict[Path, list[str]] = defaultdict(list)  # image file -> ids of its samples
    for i, record in enumerate(records):
        report.checked += 1
        try:
            sample = _sample(record, f"{json_path}[{i}]")
        except ValueError as err:
            report.add("malformed sample", str(err))
            continue
        if sample.image is None:
            continue
        try:
            path = image_path(folder, sample.image, source=json_path, item=sample.id)
        except DataError as err:
            report.add("image path escapes its folder", str(err))
            continue
        wanted[path].append(sample.id)
    for path, problem in decode_all(wanted, max_pixels, workers):
        for item in wanted[path]:
            report.add(problem[0], f"{json_path}: item {item}: {problem[1]}")
    return report


def image_problem(path: Path, max_pixels: int | None) -> tuple[str, str] | None:
    """(kind, message) of what a reader would refuse in image file ``path``, else None."""
    try:
        decode_image(path, max_pixels=max_pixels).close()
    except FileNotFoundError:
        return "missing image", f"{path} not found"
    except ImageError as err:
        return err.kind, str(err)
    return None


def decode_all(
    paths: Iterable[Path], max_pixels: int | None, workers: int
) -> list[tuple[Path, tuple[str, str]]]:
    """(path, problem) of every path whose image a reader would refuse, in the given order."""
    paths = list(paths)
    found: list[tuple[Path, tuple[str, str]]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(paths), DECODE_CHUNK):  # bounded queue: 665K images
            chunk = paths[start : start + DECODE_CHUNK]
            problems = pool.map(lambda p: image_problem(p, max_pixels), chunk)
            found += [(p, pr) for p, pr in zip(chunk, problems, strict=True) if pr is not None]
    return found


def check_spair(
    root: str | Path, split: str, report: Report, *, max_pixels: int | None = None
) -> Report:
    """Every pair of a split: annotations well formed and inside their images, pair and image
    annotations agreeing, every image inside JPEGImages/ (no link out), present, decoding
    (vislaw.data.images.decode_image) and of its annotated size."""
    from vislaw.data import spair

    root = Path(root)
    try:
        files = spair.pair_files(root, split)
    except spair.SpairFormatError as err:
        report.add("missing split", str(err))
        return report
    images: dict[str, spair.SpairImage | None] = {}
    for path in files:
        report.checked += 1
        try:
            pair = spair.parse_pair_annotation(spair._read_json(path), path)
        except spair.SpairFormatError as err:
            report.add("bad pair annotation", str(err))
            continue
        sides = []
        for image_id in (pair.src_id, pair.trg_id):
            if image_id not in images:
                images[image_id] = _spair_image(root, image_id, report, max_pixels)
            sides.append(images[image_id])
        if None in sides:
            report.add("pair with a bad image", f"{path}: see its image's entry")
            continue
        try:
            spair._check_against_images(pair, sides[0], sides[1], root, path)
        except spair.SpairFormatError as err:
            report.add("pair disagrees with image annotation", str(err))
    return report


def _spair_image(root: Path, image_id: str, report: Report, max_pixels: int | None):
    """The annotation of one SPair image, or None after reporting what is wrong with it or
    its file."""
    from vislaw.data import spair

    try:
        image = spair.load_image_annotation(root, image_id)
    except spair.SpairFormatError as err:
        report.add("bad image annotation", str(err))
        return None
    annotation = spair.image_annotation_path(root, image_id)
    try:
        path = image_path(root / "JPEGImages", image_id, source=annotation, item=image_id)
    except DataError as err:
        report.add("image path escapes its folder", str(err))
        return None
    try:
        with decode_image(path, max_pixels=max_pixels, item=image_id) as handle:
            size = handle.size
    except FileNotFoundError:
        report.add("missing image", f"{annotation}: {path} not found")
        return None
    except ImageError as err:
        report.add(err.kind, f"{annotation}: {err}")
        return None
    if size != (image.width, image.height):
        report.add(
            "image size differs from annotation",
            f"{path}: {size[0]}x{size[1]}, annotation says {image.width}x{image.height}",
        )
        return None
    return image


def check_dataset(data: DataSettings | Mapping[str, Any], dataset: str, workers: int = 1) -> Report:
    """Check ``data.<dataset>`` (pretrain, instruct or spair): ``data`` is the DataSettings or a
    schema-checked config (whose ``data`` section is read). ``workers``: decoding threads."""
    if not isinstance(data, DataSettings):
        data = DataSettings.from_config(data)
    entry = getattr(data, dataset, None) if dataset in DATASETS else None
    if entry is None:
        raise DataError(f"config key 'data.{dataset}' is not set: nothing to check")
    report = Report(dataset)
    limit = data.max_image_pixels
    if isinstance(entry, SpairSettings):
        return check_spair(data.path(entry.root), entry.split, report, max_pixels=limit)
    return check_llava(
        data.path(entry.json),
        data.path(entry.image_folder),
        report,
        max_pixels=limit,
        workers=workers,
    )


def run_check_data(
    data: DataSettings, dataset: str, out: str | Path | None, workers: int = 1
) -> Report:
    """Step ``check_data``: check one dataset, print the summary, write the report to ``out``
    (Report.write_or_raise: a bad dataset's report goes beside it and DataError is raised)."""
    report = check_dataset(data, dataset, workers)
    print(report.summary())
    if out is not None:
        report.write_or_raise(out)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    from vislaw.config import load_config

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.data.check",
        description="Validate a dataset of a config; list every bad item, counted by kind.",
    )
    parser.add_argument("--config", required=True, help="workflow config YAML")
    parser.add_argument("--dataset", required=True, choices=list(DATASETS))
    parser.add_argument("--out", help="report file (written when the dataset is clean)")
    parser.add_argument("--threads", type=int, default=1, help="image decoding threads")
    args = parser.parse_args(argv)
    try:
        report = run_check_data(
            DataSettings.from_config(load_config(args.config)),
            args.dataset,
            args.out,
            args.threads,
        )
    except DataError:
        return 1
    return 1 if report.bad else 0


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

"""Encode an image set with one encoder into the project's HDF5 layout (vislaw.io.hdf5).

CLI: ``python -m vislaw.features --config config/demo.yaml --encoder clip224 --out f.h5``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from vislaw.data.settings import DataSettings
from vislaw.encoders.base import EncoderSpec
from vislaw.io.feature_records import RECORDED_SETTINGS, check_features_file
from vislaw.io.hdf5 import open_features, write_features
from vislaw.sections import Section

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass(frozen=True)
class FeaturesSettings(Section):
    """``features``: the image set every encoder encodes for the C score, and how."""

    SECTION: ClassVar[str] = "features"
    image_set: str
    batch_size: int
    max_images: int | None
    dtype: str
    protocol: str


def spair_image_ids(spair_root: str | Path) -> list[str]:
    """Ids ``<category>/<file>`` of every image under ``JPEGImages``, sorted."""
    folder = Path(spair_root) / "JPEGImages"
    if not folder.is_dir():
        raise FileNotFoundError(f"SPair-71k image folder not found: {folder}")
    ids = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not ids:
        raise FileNotFoundError(f"no images under {folder}")
    return ids


def image_set(config: Mapping[str, Any]) -> tuple[Path, list[str]]:
    """(image folder, ids) of the configured ``features.image_set`` (a checked config)."""
    return settings_image_set(
        FeaturesSettings.from_config(config), DataSettings.from_config(config)
    )


def settings_image_set(features: FeaturesSettings, data: DataSettings) -> tuple[Path, list[str]]:
    """(image folder, ids) of ``features.image_set``, the first ``max_images`` of them."""
    if features.image_set != "spair":
        raise ValueError(f"config key 'features.image_set': unknown {features.image_set!r}")
    root = data.spair_root()
    ids = spair_image_ids(root)
    if features.max_images:
        ids = ids[: features.max_images]
    return root / "JPEGImages", ids


def read_image(folder: str | Path, image_id: str, max_pixels: int | None) -> Any:
    """Image ``image_id`` of ``folder`` as RGB, with check_data's checks (vislaw.data.images):
    no link out of the folder, decoded whole, ``data.max_image_pixels`` at most."""
    from vislaw.data.images import image_path, read_rgb

    path = image_path(folder, image_id, source=folder, item=image_id)
    return read_rgb(path, image_id, max_pixels)


def extract_features(
    spec: EncoderSpec,
    image_folder: str | Path,
    ids: Sequence[str],
    out_path: str | Path,
    *,
    batch_size: int = 8,
    dtype: str = "float16",
    device: str = "cpu",
    trained: Mapping[str, Any] | None = None,
    trained_source: str = "",
    record: Mapping[str, Any] | None = None,
    max_pixels: int | None = None,
) -> None:
    """Stream ``ids`` through the encoder in batches into ``out_path`` (atomic).

    These are the C score's SPair features: under ``protocol: paper`` they are computed as the
    authors' C-score script did (stretched, [-1, 1] for every family, DiT map transposed); the
    meta records the protocol, the image geometry and the channel layout.

    ``trained``: encoder tensors a training recipe changed (ConvLLaVA's, read from the stage-1
    folder named by ``trained_source``), so the features are those of the encoder the MLLM
    uses rather than of the spec's (for ConvLLaVA: a random fifth stage).

    ``record``: extra provenance merged into the meta (the ``features`` settings and the
    sha256 of the inputs, see :func:`features_record`), which the C score checks."""
    from tqdm import tqdm

    from vislaw.encoders.registry import build_encoder

    encoder = build_encoder(spec, device=device)
    if trained:
        encoder.load_trained(trained, source=trained_source)
    rows, cols = encoder.grid
    meta = {
        "encoder": spec.to_attrs(),
        "image_folder": str(image_folder),
        "protocol": spec.protocol,
        "purpose": "c_score",
        "geometry": encoder.geometry("c_score")["geometry"],
        "feature_layout": encoder.feature_layout(),
        # The keypoint -> grid mapping the C score uses: the letterbox under both protocols (the
        # paper's C paired stretched features with letterboxed keypoints; docs/c_score.md).
        "keypoint_geometry": "letterbox",
    }
    if trained:
        meta["trained_encoder"] = trained_source
    meta.update(record or {})
    with write_features(
        out_path, len(ids), rows * cols, encoder.channels, dtype=dtype, grid=(rows, cols), meta=meta
    ) as writer:
        for start in tqdm(
            range(0, len(ids), batch_size), desc=f"features {spec.name}", unit="batch"
        ):
            batch_ids = list(ids[start : start + batch_size])
            images = [read_image(image_folder, i, max_pixels) for i in batch_ids]
            feats = encoder.encode_images(images, "c_score").float().cpu().numpy()
            writer.append(batch_ids, feats)


def features_record(features: FeaturesSettings, stage1: str | Path | None = None) -> dict[str, Any]:
    """Provenance of a features file (vislaw.io.provenance): the settings it was made with and
    the sha256 of the trained encoder tensors it read (by role, never a path)."""
    from dataclasses import asdict

    from vislaw.io.provenance import input_hashes, settings_record

    settings = {k: v for k, v in asdict(features).items() if k in RECORDED_SETTINGS}
    record: dict[str, Any] = {"settings": settings_record(settings)}
    if stage1:
        from vislaw.vlm.checkpoints import ENCODER_FILE

        record["inputs"] = input_hashes({"stage1_encoder": Path(stage1) / ENCODER_FILE})
    return record


def fuse_feature_files(
    member_paths: Sequence[str | Path], out_path: str | Path, *, spec: EncoderSpec | None = None
) -> None:
    """Channel-concatenate members' cached features (same ids, same grid), item by item."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        members = [stack.enter_context(open_features(p)) for p in member_paths]
        first = members[0]
        if spec is not None:  # each member file must be the member the fusion's spec names
            for path, member, member_spec in zip(member_paths, members, spec.members, strict=True):
                check_features_file(path, member_spec, meta=member.meta)
        for path, member in zip(member_paths, members, strict=True):
            if member.ids != first.ids:
                raise ValueError(f"{path}: image ids differ from {member_paths[0]}")
            if member.grid != first.grid or member.features.shape[1] != first.features.shape[1]:
                raise ValueError(f"{path}: token grid {member.grid} differs from {first.grid}")
        channels = sum(m.features.shape[2] for m in members)
        protocols = {
            str(p): m.meta.get("protocol", "vislaw")
            for p, m in zip(member_paths, members, strict=True)
        }
        if len(set(protocols.values())) > 1:
            raise ValueError(
                f"fusion members were extracted under different protocols: {protocols}"
            )
        meta = {
            "encoder": spec.to_attrs() if spec else None,
            "members": [Path(p).name for p in member_paths],
            "protocol": next(iter(protocols.values())),
            "keypoint_geometry": "letterbox",
        }
        with write_features(
            out_path,
            len(first.ids),
            first.features.shape[1],
            channels,
            dtype=str(first.features.dtype),
            grid=first.grid,
            meta=meta,
        ) as writer:
            for i in range(len(first.ids)):
                parts = [m.features[i : i + 1] for m in members]
                writer.append(first.ids[i : i + 1], np.concatenate(parts, axis=-1))


def run_fuse_features(
    spec: EncoderSpec, member_paths: Sequence[str | Path], out: str | Path
) -> None:
    """Step ``fuse_features``: the fusion ``spec``'s features from its members' files."""
    if spec.family != "fusion":
        raise ValueError(f"encoder {spec.name} is not a fusion (family {spec.family})")
    fuse_feature_files(member_paths, out, spec=spec)


def shard_ids(ids: Sequence[str], rank: int, world: int) -> list[str]:
    """Rank ``rank`` of ``world`` encodes every ``world``-th image from its own offset, so the
    shards are even to one image and interleave back in the original order."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside 0..{world - 1}")
    return list(ids[rank::world])


def merge_shards(parts: Sequence[str | Path], ids: Sequence[str], out_path: str | Path) -> None:
    """One feature file in the order of ``ids`` from the ranks' files (shard_ids layout)."""
    from contextlib import ExitStack

    world = len(parts)
    with ExitStack() as stack:
        shards = [stack.enter_context(open_features(p)) for p in parts]
        for rank, shard in enumerate(shards):
            if shard.ids != shard_ids(ids, rank, world):
                raise ValueError(f"{parts[rank]}: not shard {rank} of {world} of the image set")
        first = shards[0]
        meta = {**first.meta, "ranks": world}
        with write_features(
            out_path,
            len(ids),
            first.features.shape[1],
            first.features.shape[2],
            dtype=str(first.features.dtype),
            grid=first.grid,
            meta=meta,
        ) as writer:
            for i, image_id in enumerate(ids):
                row = shards[i % world].features[i // world : i // world + 1]
                writer.append([image_id], row)


def extract_features_on_ranks(
    config_path: str | Path,
    encoder: str,
    out_path: str | Path,
    processes: int,
    *,
    stage1: str | Path | None = None,
    threads: int = 2,
) -> None:
    """The features job across ``processes`` GPUs: one rank per GPU running the features CLI
    on its share of the images (``--shard``; no collectives needed), launched by
    :func:`vislaw.ranks.run_call_on_gpus`, then the shards merged in image order.
    ``config_path``: the run's checked config file (:func:`vislaw.ranks.run_config_file`)."""
    from vislaw.config import load_config
    from vislaw.ranks import rank_part, run_call_on_gpus

    _, ids = image_set(load_config(config_path))
    parts = [rank_part(out_path, r, processes) for r in range(processes)]
    calls = []
    for rank, part in enumerate(parts):
        argv = ["--config", str(config_path), "--encoder", encoder, "--out", str(part)]
        argv += ["--threads", str(threads), "--shard", f"{rank}/{processes}"]
        if stage1:
            argv += ["--stage1", str(stage1)]
        calls.append({"argv": argv})
    try:
        run_call_on_gpus(
            "vislaw.features.cli:main", calls, Path(out_path).parent, f"features of {encoder}"
        )
        merge_shards(parts, ids, out_path)
    finally:
        for part in parts:
            part.unlink(missing_ok=True)


def run_features(
    features: FeaturesSettings,
    data: DataSettings,
    spec: EncoderSpec,
    out: str | Path,
    *,
    device: str = "cpu",
    stage1: str | Path | None = None,
    shard: tuple[int, int] | None = None,
) -> None:
    """Step ``features`` in one process: encode the image set (or rank ``shard[0]``'s share of
    ``shard[1]``, see :func:`shard_ids`) with ``spec`` into ``out``. ``stage1``: the stage-1
    folder whose trained encoder tensors to use (an encoder its recipe trains, ConvLLaVA)."""
    if spec.family == "fusion":
        raise ValueError(
            f"encoder {spec.name}: fusions are made from their members' files "
            "(see rule fuse_features)"
        )
    folder, ids = settings_image_set(features, data)
    if shard is not None:
        ids = shard_ids(ids, *shard)
    trained: dict[str, Any] = {}
    if stage1:
        from vislaw.vlm.checkpoints import read_encoder_weights

        trained = read_encoder_weights(stage1)
    extract_features(
        spec,
        folder,
        ids,
        out,
        batch_size=features.batch_size,
        dtype=features.dtype,
        device=device,
        trained=trained,
        trained_source=str(stage1) if stage1 else "",
        record=features_record(features, stage1 if trained else None),
        max_pixels=data.max_image_pixels,
    )


def run_features_on_gpus(
    config: Mapping[str, Any],
    spec: EncoderSpec,
    out: str | Path,
    gpus: int,
    *,
    stage1: str | Path | None = None,
    threads: int = 2,
) -> None:
    """Step ``features`` on ``gpus`` GPUs (:func:`extract_features_on_ranks`); the rank
    processes read the run's checked config file (:func:`vislaw.ranks.run_config_file`)."""
    from vislaw.ranks import run_config_file

    extract_features_on_ranks(
        run_config_file(config), spec.name, out, gpus, stage1=stage1, threads=threads
    )

"""Embedding extraction through a stage-1 model, and the caption log-likelihood (A score v3).

Post-projector image tokens (N, tokens, d_llm) of a benchmark's image sample go to the
project's HDF5 layout (vislaw.io.hdf5), streamed in batches so memory does not grow with N.
The same loaded model then scores captions: the v3 A score is the mean, over a seeded sample of
stage-1 image-caption pairs, of each caption's mean per-token log-likelihood under the frozen
encoder + projector + LLM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vislaw.io.hdf5 import write_features
from vislaw.scores.settings import AScoreSettings

if TYPE_CHECKING:
    from vislaw.data.llava import LlavaSample
    from vislaw.encoders.base import EncoderSpec
    from vislaw.vlm.inference import LoadedVlm


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_embeddings(
    vlm: LoadedVlm,
    items: Sequence[dict[str, str]],
    out_path: str | Path,
    *,
    batch_size: int = 8,
    dtype: str = "float16",
    meta: dict[str, Any] | None = None,
) -> None:
    """Write the post-projector embeddings of ``items`` (``{"id", "path"}``) to ``out_path``."""
    from tqdm import tqdm

    from vislaw.data.images import read_rgb

    model = vlm.model
    tokens = model.image_tokens
    width = int(model.llm.get_input_embeddings().weight.shape[1])
    with (
        torch.inference_mode(),
        write_features(out_path, len(items), tokens, width, dtype=dtype, meta=meta) as writer,
    ):
        for start in tqdm(range(0, len(items), batch_size), desc=f"embed {Path(out_path).stem}"):
            batch = items[start : start + batch_size]
            # decoded and checked as check_data checks images (vislaw.data.images)
            images = [read_rgb(item["path"], item["id"]) for item in batch]
            embeds = model.image_embeddings(vlm.pixels(images)).float().cpu().numpy()
            writer.append([item["id"] for item in batch], embeds)


def sample_captions(samples: Sequence[LlavaSample], n: int, seed: int) -> list[LlavaSample]:
    """A seeded sample of image-caption pairs (samples with an image), in file order."""
    with_image = [s for s in samples if s.image is not None]
    if not with_image:
        raise ValueError("no image-caption pairs to score")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(with_image), size=min(n, len(with_image)), replace=False)
    return [with_image[i] for i in sorted(picked)]


def caption_loglik(
    vlm: LoadedVlm,
    samples: Sequence[LlavaSample],
    image_folder: str | Path,
    *,
    batch_size: int = 8,
) -> float:
    """Mean over samples of the caption's mean per-token log-likelihood (A score v3).

    Tokenised with the stage's own template (``plain`` for stage 1: only the caption is target).
    """
    return float(np.mean(caption_logliks(vlm, samples, image_folder, batch_size=batch_size)))


def caption_logliks(
    vlm: LoadedVlm,
    samples: Sequence[LlavaSample],
    image_folder: str | Path,
    *,
    batch_size: int = 8,
) -> list[float]:
    """Each caption's mean per-token log-likelihood, in sample order (ranks merge these)."""
    from vislaw.data.llava import LlavaCollator, LlavaDataset
    from vislaw.vlm.model import map_pixels, preprocess_images

    model = vlm.model
    dataset = LlavaDataset(
        samples,
        image_folder,
        vlm.tokenizer,
        vlm.template,
        lambda images: preprocess_images(model.encoder, images, vlm.info.pad_to_square),
        image_tokens=model.image_tokens,
        max_length=vlm.info.max_length,
    )
    collate = LlavaCollator(vlm.tokenizer.pad_token_id)
    device = next(model.llm.parameters()).device
    per_sample: list[float] = []
    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        pixels = batch.get("pixel_values")
        nll = model.sequence_nll(
            batch["input_ids"].to(device),
            batch["attention_mask"].to(device),
            batch["labels"].to(device),
            map_pixels(lambda t: t.to(device), pixels) if pixels is not None else None,
            batch["image_mask"].to(device),
        )
        per_sample.extend((-nll).tolist())
    return per_sample


@dataclass(frozen=True)
class EmbeddingPaths:
    """The embeddings job's files: the stage-1 folder it loads, each benchmark's image sample
    (``samples``) and embeddings file (``outputs``), and the caption log-likelihood JSON
    (``loglik``). One record, so a caller names each rather than passing five in order."""

    stage1_dir: str | Path
    samples: Mapping[str, str | Path]
    outputs: Mapping[str, str | Path]
    loglik: str | Path

    def as_call(self) -> dict[str, Any]:
        """The paths as JSON values, in the keys of :func:`embedding_rank` (a saved call)."""
        return {
            "stage1": str(self.stage1_dir),
            "samples": {k: str(v) for k, v in self.samples.items()},
            "outputs": {k: str(v) for k, v in self.outputs.items()},
            "loglik": str(self.loglik),
        }


@dataclass(frozen=True)
class CaptionSource:
    """Where the A score v3's captions come from: stage 1's LLaVA JSON and image folder, and the
    run's seed that picks the sample (``a_score.n_captions`` of them)."""

    json: Path
    image_folder: Path
    seed: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CaptionSource:
        """Stage 1's data (``data.pretrain``, under ``data.root``) and ``seed`` of a checked
        config."""
        from vislaw.train.settings import stage_data

        json_path, image_folder = stage_data(config, 1)
        return cls(json_path, image_folder, int(config["seed"]))


def embedding_job(
    settings: AScoreSettings,
    *,
    paths: EmbeddingPaths,
    captions: CaptionSource,
    spec: EncoderSpec | None = None,
    device: str = "cpu",
    shard: tuple[int, int] = (0, 1),
) -> None:
    """One encoder: load its stage-1 model once, embed every benchmark's image sample, then
    score the caption log-likelihood; all outputs atomic. ``spec``: the config's spec of the
    encoder; the stage folder must record it (vislaw.io.provenance)."""
    import json

    from vislaw.data.llava import read_llava_json
    from vislaw.io.atomic import write_text_atomic
    from vislaw.scores.a_images import read_sample
    from vislaw.vlm.checkpoints import ENCODER_FILE, PROJECTOR_FILE
    from vislaw.vlm.inference import load_vlm

    stage1_dir = Path(paths.stage1_dir)
    # bf16 on the GPU (a 7B model in fp32 would need ~28 GB); fp32 on the CPU (demo, tests).
    vlm = load_vlm(
        stage1_dir,
        device=device,
        dtype=torch.bfloat16 if device.startswith("cuda") else None,
        spec=spec,
    )
    # The stage's trained weights: the projector, plus the encoder tensors a ConvLLaVA-style
    # recipe trains (encoder.safetensors), so the hash changes whenever the embeddings can.
    trained = [stage1_dir / PROJECTOR_FILE, stage1_dir / ENCODER_FILE]
    checkpoint = ":".join(file_sha256(p) for p in trained if p.exists())
    for bench, out_path in paths.outputs.items():
        sample = read_sample(paths.samples[bench])
        sample["items"] = sample["items"][shard[0] :: shard[1]]
        meta = {
            "encoder": vlm.info.encoder.name,
            "benchmark": bench,
            "checkpoint_sha256": checkpoint,
            "sample_seed": sample["seed"],
            "dtype": settings.dtype,
        }
        extract_embeddings(
            vlm,
            sample["items"],
            out_path,
            batch_size=settings.batch_size,
            dtype=settings.dtype,
            meta=meta,
        )
    picked = sample_captions(read_llava_json(captions.json), settings.n_captions, captions.seed)
    n_captions = len(picked)
    picked = picked[shard[0] :: shard[1]]
    values = caption_logliks(vlm, picked, captions.image_folder, batch_size=settings.batch_size)
    record = {
        "encoder": vlm.info.encoder.name,
        "a_loglik": float(np.mean(values)),
        "n_captions": n_captions,
        "checkpoint_sha256": checkpoint,
    }
    if shard[1] > 1:  # a rank's share: the job merges the values (embedding_job_on_ranks)
        record.update(per_sample=values, shard=list(shard))
    write_text_atomic(paths.loglik, json.dumps(record, indent=1))


def embedding_job_on_ranks(
    config_path: str | Path,
    *,
    paths: EmbeddingPaths,
    processes: int,
    encoder: str | None = None,
) -> None:
    """The embeddings job across ``processes`` GPUs: one process per GPU on every ``processes``-th
    image of each sample and every ``processes``-th caption, then the shards merged in order
    (the same files as one process writes, plus ``ranks`` in the meta). ``config_path``: the
    run's checked config file, which each rank reads (a saved call holds JSON, not settings)."""
    import json

    from vislaw.features import merge_shards
    from vislaw.io.atomic import write_text_atomic
    from vislaw.ranks import rank_part, run_call_on_gpus
    from vislaw.scores.a_images import read_sample

    def part(path: str | Path, rank: int) -> Path:
        return rank_part(path, rank, processes)

    calls = [
        {
            "config": str(config_path),
            **EmbeddingPaths(
                paths.stage1_dir,
                paths.samples,
                {k: part(v, rank) for k, v in paths.outputs.items()},
                part(paths.loglik, rank),
            ).as_call(),
            "shard": [rank, processes],
            "encoder": encoder,
        }
        for rank in range(processes)
    ]
    try:
        target = "vislaw.scores.embeddings:embedding_rank"
        run_call_on_gpus(target, calls, Path(paths.loglik).parent, "embeddings")
        for bench, out in paths.outputs.items():
            ids = [item["id"] for item in read_sample(paths.samples[bench])["items"]]
            merge_shards([part(out, r) for r in range(processes)], ids, out)
        records = [json.loads(part(paths.loglik, r).read_text()) for r in range(processes)]
        values = [
            records[i % processes]["per_sample"][i // processes]
            for i in range(sum(len(r["per_sample"]) for r in records))
        ]
        record = {k: v for k, v in records[0].items() if k not in {"per_sample", "shard"}}
        record["a_loglik"] = float(np.mean(values))
        write_text_atomic(paths.loglik, json.dumps(record, indent=1))
    finally:
        for rank in range(processes):
            part(paths.loglik, rank).unlink(missing_ok=True)
            for out in paths.outputs.values():
                part(out, rank).unlink(missing_ok=True)


def _job_inputs(
    config: Mapping[str, Any], encoder: str | None
) -> tuple[AScoreSettings, CaptionSource, EncoderSpec | None]:
    """What :func:`embedding_job` takes from a checked config: the ``a_score`` settings, the
    caption source and, when ``encoder`` is named, its spec (the stage folder must record it)."""
    spec = None
    if encoder is not None:
        from vislaw.encoders.registry import encoder_spec, resolve_encoders

        spec = encoder_spec(resolve_encoders(config), encoder)
    return AScoreSettings.from_config(config), CaptionSource.from_config(config), spec


def run_embeddings(
    config: Mapping[str, Any],
    stage1_dir: str | Path,
    samples: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    loglik_out: str | Path,
    *,
    gpus: int = 0,
    device: str = "cpu",
    encoder: str | None = None,
) -> None:
    """Step ``embeddings`` (a checked config: ``a_score``, ``seed`` and stage 1's data): one
    process, or with ``gpus > 1`` one process per GPU (:func:`embedding_job_on_ranks`, whose
    ranks read the run's checked config file, :func:`vislaw.ranks.run_config_file`)."""
    paths = EmbeddingPaths(stage1_dir, samples, outputs, loglik_out)
    if gpus <= 1:
        settings, captions, spec = _job_inputs(config, encoder)
        embedding_job(settings, paths=paths, captions=captions, spec=spec, device=device)
        return
    from vislaw.ranks import run_config_file

    embedding_job_on_ranks(run_config_file(config), paths=paths, processes=gpus, encoder=encoder)


def embedding_rank(
    config: str,
    stage1: str,
    samples: dict[str, str],
    outputs: dict[str, str],
    loglik: str,
    shard: list[int],
    encoder: str | None = None,
) -> None:
    """One rank of :func:`embedding_job_on_ranks` (its saved call, run by ``vislaw.ranks``):
    ``config`` is the run's checked config file, read here into the job's settings."""
    from vislaw.config import load_config
    from vislaw.host import pick_device

    checked = load_config(config)
    settings, captions, spec = _job_inputs(checked, encoder)
    embedding_job(
        settings,
        paths=EmbeddingPaths(stage1, samples, outputs, loglik),
        captions=captions,
        spec=spec,
        device=pick_device(checked),
        shard=(shard[0], shard[1]),
    )

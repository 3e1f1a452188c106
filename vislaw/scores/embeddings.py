"""Embedding extraction through a stage-1 model, and the caption log-likelihood (A score v3).

Post-projector image tokens (N, tokens, d_llm) of a benchmark's image sample go to the
project's HDF5 layout (vislaw.io.hdf5), streamed in batches so memory does not grow with N.
The same loaded model then scores captions: the v3 A score is the mean, over a seeded sample of
stage-1 image-caption pairs, of each caption's mean per-token log-likelihood under the frozen
encoder + projector + LLM.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vislaw.io.hdf5 import write_features

if TYPE_CHECKING:
    from vislaw.data.llava import LlavaSample
    from vislaw.vlm.checkpoints import LoadedVlm


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
    from PIL import Image
    from tqdm import tqdm

    model = vlm.model
    tokens = model.image_tokens
    width = int(model.llm.get_input_embeddings().weight.shape[1])
    with (
        torch.inference_mode(),
        write_features(out_path, len(items), tokens, width, dtype=dtype, meta=meta) as writer,
    ):
        for start in tqdm(range(0, len(items), batch_size), desc=f"embed {Path(out_path).stem}"):
            batch = items[start : start + batch_size]
            images = []
            for item in batch:
                try:
                    with Image.open(item["path"]) as im:
                        images.append(im.convert("RGB"))
                except OSError as err:
                    raise OSError(f"cannot read image {item['path']}: {err}") from err
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
    return float(np.mean(per_sample))


def embedding_job(
    config: dict[str, Any],
    stage1_dir: str | Path,
    samples: dict[str, str | Path],
    outputs: dict[str, str | Path],
    loglik_out: str | Path,
    *,
    device: str = "cpu",
) -> None:
    """One encoder: load its stage-1 model once, embed every benchmark's image sample, then
    score the caption log-likelihood; all outputs atomic."""
    import json

    from vislaw.data.llava import read_llava_json
    from vislaw.eval.images import read_sample
    from vislaw.io.atomic import write_text_atomic
    from vislaw.train.settings import stage_data
    from vislaw.vlm.checkpoints import ENCODER_FILE, PROJECTOR_FILE, load_vlm

    settings = config["a_score"]
    # bf16 on the GPU (a 7B model in fp32 would need ~28 GB); fp32 on the CPU (demo, tests).
    import torch

    vlm = load_vlm(
        stage1_dir, device=device, dtype=torch.bfloat16 if device.startswith("cuda") else None
    )
    # The stage's trained weights: the projector, plus the encoder tensors a ConvLLaVA-style
    # recipe trains (encoder.safetensors), so the hash changes whenever the embeddings can.
    trained = [Path(stage1_dir) / PROJECTOR_FILE, Path(stage1_dir) / ENCODER_FILE]
    checkpoint = ":".join(file_sha256(p) for p in trained if p.exists())
    for bench, out_path in outputs.items():
        sample = read_sample(samples[bench])
        meta = {
            "encoder": vlm.info.encoder.name,
            "benchmark": bench,
            "checkpoint_sha256": checkpoint,
            "sample_seed": sample["seed"],
            "dtype": settings["dtype"],
        }
        extract_embeddings(
            vlm,
            sample["items"],
            out_path,
            batch_size=settings["batch_size"],
            dtype=settings["dtype"],
            meta=meta,
        )
    json_path, image_folder = stage_data(config, 1)
    captions = sample_captions(read_llava_json(json_path), settings["n_captions"], config["seed"])
    value = caption_loglik(vlm, captions, image_folder, batch_size=settings["batch_size"])
    record = {
        "encoder": vlm.info.encoder.name,
        "a_loglik": value,
        "n_captions": len(captions),
        "checkpoint_sha256": checkpoint,
    }
    write_text_atomic(loglik_out, json.dumps(record, indent=1))

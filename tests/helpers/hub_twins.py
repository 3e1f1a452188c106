"""Tiny random-init twins saved under the *real* repo ids and the *real* repo layouts in a Hub
cache folder (``<hf_home>/hub/models--<org>--<name>/snapshots/<commit>/``, ``refs/main``), so that
``from_pretrained("<real id>")`` with ``HF_HUB_OFFLINE=1`` loads them through the families' real
loading code. The diffusion savers (SD's hub layout, its text encoders and tokenizers) are here
too: test_encoders checks the real loading path on them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from vislaw.encoders.base import EncoderSpec, seeded
from vislaw.encoders.diffusion import TINY_TEXT, tiny_empty_prompt_ids
from vislaw.encoders.registry import build_encoder, family_class

DIFFUSERS_CLASS = {
    "sd_unet": "StableDiffusionPipeline",
    "sd_unet/sdxl": "StableDiffusionXLPipeline",
    "sd_image_variations": "StableDiffusionImageVariationPipeline",
    "dit": "DiTPipeline",
    "sd3": "StableDiffusion3Pipeline",
}


def _write_tokenizer(folder):
    """A CLIP tokenizer whose empty prompt is the tiny twin's ids (BOS, EOS, EOS padding)."""
    from transformers import CLIPTokenizer

    vocab = {"a</w>": 0, "<|startoftext|>": TINY_TEXT["bos_token_id"]}
    vocab["<|endoftext|>"] = TINY_TEXT["eos_token_id"]
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "vocab.json").write_text(json.dumps(vocab))
    (folder / "src" / "merges.txt").write_text("#version: 0.2\n")
    length = TINY_TEXT["max_position_embeddings"]
    tokenizer = CLIPTokenizer(
        str(folder / "src" / "vocab.json"),
        str(folder / "src" / "merges.txt"),
        model_max_length=length,
    )
    tokenizer.save_pretrained(folder)


def write_text_encoder(root, suffix: str, projected: bool):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    model_class = CLIPTextModelWithProjection if projected else CLIPTextModel
    with seeded(7):
        model = model_class(CLIPTextConfig(**TINY_TEXT))
    model.save_pretrained(root / f"text_encoder{suffix}")
    _write_tokenizer(root / f"tokenizer{suffix}")
    return model


def sd_layout(encoder, root, variant: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Save a twin in SD's hub layout; returns the empty prompt's (tokens, pooled) embeddings."""
    from transformers import CLIPTextConfig

    encoder.model["vae"].save_pretrained(root / "vae")
    encoder.model["unet"].save_pretrained(root / "unet")
    encoder.scheduler.save_pretrained(root / "scheduler")
    ids = tiny_empty_prompt_ids(CLIPTextConfig(**TINY_TEXT))
    with torch.no_grad():
        if variant == "sd":
            model = write_text_encoder(root, "", projected=False)
            return model(input_ids=ids).last_hidden_state, None
        models = [
            write_text_encoder(root, "", projected=False),
            write_text_encoder(root, "_2", projected=True),
        ]
        hidden = [m(input_ids=ids, output_hidden_states=True).hidden_states[-2] for m in models]
        return torch.cat(hidden, -1), models[1](input_ids=ids).text_embeds


# Twins with the real models' UNet depth (three / two downsamplings), so that the real
# path's grid arithmetic holds for them too.
REAL_DEPTH_UNET = {
    "sd": {
        "block_out_channels": [16, 16, 32, 32],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    },
    "sdxl": {
        "block_out_channels": [16, 32, 32],
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
        "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"],
    },
}


def snapshot_dir(hf_home: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` at a fixed fake commit; ``refs/main`` points at it."""
    repo = Path(hf_home) / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _tiny(spec: EncoderSpec, **tiny) -> EncoderSpec:
    return dataclasses.replace(spec, tiny=tiny, model_id=None)


def write_twin(snapshot: Path, spec: EncoderSpec) -> None:
    """Save the tiny twin of ``spec``'s family in the layout its real repo has."""
    family = spec.family
    if family in ("clip", "siglip", "dinov2"):
        build_encoder(_tiny(spec)).model.save_pretrained(snapshot)
        return
    if family == "convnext":  # the repo holds the four-stage tower; the fifth is appended
        plain = dataclasses.replace(_tiny(spec), fifth_stage=False)
        build_encoder(plain).model.save_pretrained(snapshot)
        return
    key = family
    if family == "sd_unet":
        variant = family_class("sd_unet").variant(spec)
        key = "sd_unet/sdxl" if variant == "sdxl" else family
        tiny = {"unet": REAL_DEPTH_UNET[variant]}
        if variant == "sdxl":
            tiny["variant"] = "sdxl"
        sd_layout(build_encoder(_tiny(spec, **tiny)), snapshot, variant)
    elif family == "sd_image_variations":
        twin = build_encoder(_tiny(spec, unet=REAL_DEPTH_UNET["sd"]))
        for part in ("vae", "unet", "image_encoder"):
            twin.model[part].save_pretrained(snapshot / part)
        twin.scheduler.save_pretrained(snapshot / "scheduler")
    elif family == "dit":
        twin = build_encoder(_tiny(spec))
        for part in ("vae", "transformer"):
            twin.model[part].save_pretrained(snapshot / part)
        twin.scheduler.save_pretrained(snapshot / "scheduler")
    elif family == "sd3":
        from diffusers import FlowMatchEulerDiscreteScheduler

        twin = build_encoder(_tiny(spec))
        for part in ("vae", "transformer"):
            twin.model[part].save_pretrained(snapshot / part)
        FlowMatchEulerDiscreteScheduler().save_pretrained(snapshot / "scheduler")
        write_text_encoder(snapshot, "", projected=True)
        write_text_encoder(snapshot, "_2", projected=True)
    else:
        raise ValueError(f"no hub twin for family {family!r}")
    (snapshot / "model_index.json").write_text(json.dumps({"_class_name": DIFFUSERS_CLASS[key]}))


def write_hub_twins(hf_home: Path, specs: dict[str, EncoderSpec]) -> list[str]:
    """A twin per real repo id of ``specs`` (the first spec naming a repo decides its twin);
    returns the repo ids written."""
    written: list[str] = []
    for spec in specs.values():
        if spec.family == "fusion" or not spec.model_id or spec.model_id in written:
            continue
        write_twin(snapshot_dir(hf_home, spec.model_id), spec)
        written.append(spec.model_id)
    return written

"""Tiny random-init twins saved under the *real* repo ids and the *real* repo layouts in a Hub
cache folder (``<hf_home>/hub/models--<org>--<name>/snapshots/<commit>/``, ``refs/main``), so that
``from_pretrained("<real id>")`` with ``HF_HUB_OFFLINE=1`` loads them through the families' real
loading code. The per-family savers are test_encoders' hub-layout helpers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from test_encoders import REAL_DEPTH_UNET, _sd_layout, _write_text_encoder

from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder, family_class

DIFFUSERS_CLASS = {
    "sd_unet": "StableDiffusionPipeline",
    "sd_unet/sdxl": "StableDiffusionXLPipeline",
    "sd_image_variations": "StableDiffusionImageVariationPipeline",
    "dit": "DiTPipeline",
    "sd3": "StableDiffusion3Pipeline",
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
        _sd_layout(build_encoder(_tiny(spec, **tiny)), snapshot, variant)
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
        _write_text_encoder(snapshot, "", projected=True)
        _write_text_encoder(snapshot, "_2", projected=True)
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

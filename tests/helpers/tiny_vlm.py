"""The tiny CLIP + tiny Llama MLLM of the model tests, and a finished stage-1 folder of it (what
the A-score tests and their several-rank run start from)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from vislaw.encoders.base import EncoderSpec
from vislaw.vlm.checkpoints import VlmInfo, llm_reference, write_stage
from vislaw.vlm.model import LlavaStyleModel
from vislaw.vlm.projector import build_projector
from vislaw.vlm.random_llm import write_tiny_llm

SPEC = EncoderSpec("clip_t", "clip", input_size=56, tiny={}, patch_size=14)
STAGE1_TEXTS = ["a red square on a white background", "a blue circle on a white background"] * 3
"""The vocabulary of :func:`write_stage1`'s tiny LLM."""


def make_model(encoder, llm_dir: Path, kind: str = "mlp2x_gelu") -> LlavaStyleModel:
    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    torch.manual_seed(0)
    projector = build_projector(kind, encoder.channels, llm.config.hidden_size)
    return LlavaStyleModel(encoder, projector, llm).eval()


def vlm_info(stage: int, model: LlavaStyleModel, llm: str, local: bool, template: str) -> VlmInfo:
    info = VlmInfo.of_parts(
        stage,
        SPEC,
        model.encoder,
        model.llm,
        projector_type="mlp2x_gelu",
        template=template,
        llm_ref=llm,
        llm_local=local,
    )
    assert info.image_tokens == model.image_tokens
    return info


def write_stage1(root: Path) -> Path:
    """A finished stage-1 folder under ``root`` (tiny CLIP, random projector, tiny Llama, plain
    template); the ``stage1`` module fixture (helpers.fixtures) and the several-rank A score."""
    from vislaw.encoders.registry import build_encoder

    root.mkdir(parents=True, exist_ok=True)
    llm_dir = write_tiny_llm(STAGE1_TEXTS, root / "llm", seed=0)
    model = make_model(build_encoder(SPEC), llm_dir)
    folder = root / "stage1" / "clip_t"
    reference, local = llm_reference(str(llm_dir), folder)
    write_stage(folder, vlm_info(1, model, reference, local, "plain"), model.projector.state_dict())
    return folder

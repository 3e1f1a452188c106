"""CLIP ViTs: OpenAI CLIP and the Hugging Face port of OpenCLIP (same architecture).

Feature: ``hidden_states[layer]`` (LLaVA's penultimate layer by default), CLS token dropped.
``protocol: paper``: the stock CLIP processor's square (shortest edge to the input size, centre
crop), as the authors' LLaVA training ran with ``image_aspect_ratio: square``.
"""

from __future__ import annotations

from vislaw.encoders.base import CLIP_MEAN, CLIP_STD
from vislaw.encoders.vit import ViTEncoder

TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 14,
}


class ClipEncoder(ViTEncoder):
    family = "clip"
    # A full CLIP checkpoint (vision + text) or a vision-only one; OpenCLIP's HF ports are "clip".
    model_types = frozenset({"clip", "clip_vision_model"})
    # A full CLIP checkpoint loaded as its vision tower: the text tower and both projections.
    unused_heads = (r"text_model\.", r"text_projection\.", r"visual_projection\.", r"logit_scale$")
    mean, std = CLIP_MEAN, CLIP_STD
    model_class = "CLIPVisionModel"
    config_class = "CLIPVisionConfig"
    tiny_defaults = TINY_CLIP
    default_patch = 14
    paper_geometry = "crop"

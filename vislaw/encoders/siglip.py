"""SigLIP (and the fixed-resolution SigLIP 2 checkpoints, which load as SigLIP) ViTs.

Feature: ``hidden_states[layer]`` (penultimate by default). SigLIP has no CLS token (it pools
with an attention head), so every token is a patch token. Pixels in [-1, 1].
"""

from __future__ import annotations

from vislaw.encoders.base import HALF_MEAN, HALF_STD
from vislaw.encoders.vit import ViTEncoder

TINY_SIGLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 16,
}


class SiglipEncoder(ViTEncoder):
    family = "siglip"
    # SigLIP, and the fixed-resolution SigLIP 2 checkpoints (published as model_type "siglip").
    model_types = frozenset({"siglip", "siglip_vision_model"})
    # A full SigLIP checkpoint loaded as its vision tower: the text tower and the logit scalars.
    unused_heads = (r"text_model\.", r"logit_scale$", r"logit_bias$")
    mean, std = HALF_MEAN, HALF_STD
    model_class = "SiglipVisionModel"
    config_class = "SiglipVisionConfig"
    tiny_defaults = TINY_SIGLIP
    default_patch = 16

    def n_prefix_tokens(self) -> int:
        return 0

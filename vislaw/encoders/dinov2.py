"""DINOv2 ViTs (self-supervised; ImageNet mean/std).

Feature: ``hidden_states[layer]`` (penultimate by default) without the CLS token and, for the
"with registers" checkpoints, without the register tokens that follow it. The real checkpoint
is loaded with ``AutoModel`` so both kinds work; the tiny twin is a stock ``Dinov2Model``.
DINOv2 always interpolates its position embeddings, so any multiple of the patch size works.
``protocol: paper``: the stock DINOv2 processor's square (shortest edge to 256/224 of the input
size, centre crop: 256 -> 224 at the paper's size), as the authors' LLaVA training ran.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vislaw.encoders.base import IMAGENET_MEAN, IMAGENET_STD
from vislaw.encoders.vit import ViTEncoder

if TYPE_CHECKING:
    import torch

TINY_DINOV2 = {
    "hidden_size": 32,
    "mlp_ratio": 2,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 14,
}


class Dinov2Encoder(ViTEncoder):
    family = "dinov2"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    model_class = "Dinov2Model"
    config_class = "Dinov2Config"
    tiny_defaults = TINY_DINOV2
    default_patch = 14
    can_interpolate = False
    paper_geometry = "crop"
    paper_resize_ratio = 256 / 224

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        from transformers import AutoModel

        from vislaw.encoders.loading import load_checked

        return load_checked(AutoModel, model_id, family=self.family, owner=self.spec.name)

    def n_prefix_tokens(self) -> int:
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)

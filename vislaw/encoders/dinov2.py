"""DINOv2 ViTs (self-supervised; ImageNet mean/std).

Feature: ``hidden_states[layer]`` (penultimate by default) without the CLS token and, for the
"with registers" checkpoints, without the register tokens that follow it. The real checkpoint
is loaded with ``AutoModel`` so both kinds work; the tiny twin is a stock ``Dinov2Model``.
DINOv2 always interpolates its position embeddings, so any multiple of the patch size works.
``protocol: paper``, what the authors' tower fed the model:
- at 224 px the stock DINOv2 processor's square (shortest edge to 256, centre crop 224); at any
  other size a stretch to the square, as the only size change in their ``dinov2_encoder.py``
  (processor ``size`` and ``crop_size`` both set to ``{width, height}`` of the size: a resize to
  the exact square, then a no-op crop) does. Their 336 px fusion needs that 24x24 grid.
- position embeddings interpolated as their pinned transformers 4.38.2 did
  (:func:`interpolate_pos_like_4_38`), not as transformers 5 does.
"""

from __future__ import annotations

import math
import types
from typing import TYPE_CHECKING, Any

from vislaw.encoders.base import IMAGENET_MEAN, IMAGENET_STD, EncoderSpec
from vislaw.encoders.vit import ViTEncoder

if TYPE_CHECKING:
    import torch

# The stock processor's crop: the one size at which the authors' tower used resize + crop.
STOCK_CROP = 224

TINY_DINOV2 = {
    "hidden_size": 32,
    "mlp_ratio": 2,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "patch_size": 14,
}


class Dinov2Encoder(ViTEncoder):
    family = "dinov2"
    model_types = frozenset({"dinov2", "dinov2_with_registers"})
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    model_class = "Dinov2Model"
    config_class = "Dinov2Config"
    tiny_defaults = TINY_DINOV2
    default_patch = 14
    can_interpolate = False
    paper_geometry = "crop"
    paper_resize_ratio = 256 / 224

    def __init__(self, spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None):
        super().__init__(spec, device, dtype)
        embeddings = getattr(self.model, "embeddings", None)
        # Only DINOv2's own embeddings (CLS + patches): 4.38 had no register variant to follow.
        if spec.is_paper and type(embeddings).__name__ == "Dinov2Embeddings":
            embeddings.interpolate_pos_encoding = types.MethodType(
                interpolate_pos_like_4_38, embeddings
            )

    def geometry(self, purpose: str = "mllm") -> dict[str, Any]:
        found = super().geometry(purpose)
        if self.spec.is_paper and purpose == "mllm" and self.spec.input_size != STOCK_CROP:
            found = {key: value for key, value in found.items() if key != "resize_to"}
            found["geometry"] = "stretch"
        return found

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        from transformers import AutoModel

        from vislaw.encoders.loading import load_checked

        return load_checked(AutoModel, model_id, family=self.family, owner=self.spec.name)

    def n_prefix_tokens(self) -> int:
        return 1 + int(getattr(self.model.config, "num_register_tokens", 0) or 0)


def interpolate_pos_like_4_38(
    self: torch.nn.Module, embeddings: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Position embeddings for a ``height`` x ``width`` input as transformers 4.38.2's
    ``Dinov2Embeddings.interpolate_pos_encoding`` computed them (read from that release's
    ``modeling_dinov2.py``): bicubic with a *scale factor* of (cells + 0.1) / grid side, the
    DINO repository's offset against rounding, where transformers 5 asks for the exact size.
    The two differ by about 1e-2 relative on a real 37x37 grid. Bound to the embeddings module.
    """
    import torch
    import torch.nn.functional as F

    n_patches = embeddings.shape[1] - 1
    n_positions = self.position_embeddings.shape[1] - 1
    if n_patches == n_positions and height == width:
        return self.position_embeddings
    side = math.sqrt(n_positions)
    patch = self.config.patch_size
    rows, cols = height // patch + 0.1, width // patch + 0.1
    grid = self.position_embeddings[:, 1:].reshape(1, int(side), int(side), embeddings.shape[-1])
    resized = F.interpolate(
        grid.permute(0, 3, 1, 2).to(torch.float32),
        scale_factor=(float(rows / side), float(cols / side)),
        mode="bicubic",
        align_corners=False,
    ).to(grid.dtype)
    if (int(rows), int(cols)) != tuple(resized.shape[-2:]):
        raise ValueError(f"interpolated position grid {tuple(resized.shape[-2:])} != the input's")
    flat = resized.permute(0, 2, 3, 1).reshape(1, -1, embeddings.shape[-1])
    return torch.cat((self.position_embeddings[:, :1], flat), dim=1)

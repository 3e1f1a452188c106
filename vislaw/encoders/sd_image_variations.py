"""Stable Diffusion Image Variations (lambdalabs): an SD 1.x UNet conditioned on an image.

Everything is as in :mod:`vislaw.encoders.sd_unet` (same latent, noise, timestep and
``up_blocks[up_block]`` feature; 768 px -> 24x24x1280) except the conditioning: instead of the
empty prompt, the CLIP image embedding (``CLIPVisionModelWithProjection.image_embeds``, one
token) of the same input image. The embedding is computed from the model's input pixels
(letterboxed, [-1, 1]) taken back to [0, 1], resized to 224 px (bicubic without antialiasing,
as in the model card's transform) and normalised with CLIP's mean/std.

``protocol: paper`` (the authors' featurizer): the CLIP image encoder gets the model input
([-1, 1]) resized bilinearly to 224 px, with no CLIP mean/std.

The image encoder is the repo's ``image_encoder`` subfolder, or ``options.image_encoder_id``.
Tiny twin: the sd_unet tiny (SD layout) plus a tiny CLIP vision tower at 224 px (patch 32)
whose projection width is the UNet's cross-attention width; overrides under
``tiny.image_encoder``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vislaw.encoders.base import CLIP_MEAN, CLIP_STD, EncoderSpec
from vislaw.encoders.diffusion import tiny_section
from vislaw.encoders.sd_unet import SdUnetEncoder

if TYPE_CHECKING:
    import torch

CLIP_IMAGE_SIZE = 224
TINY_IMAGE_ENCODER: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "image_size": CLIP_IMAGE_SIZE,
    "patch_size": 32,
    "projection_dim": 32,
}


class SdImageVariationsEncoder(SdUnetEncoder):
    family = "sd_image_variations"
    tiny_keys = frozenset({"vae", "unet", "image_encoder"})
    hub_folders = ("unet", "vae", "scheduler", "image_encoder")

    @classmethod
    def variant(cls, spec: EncoderSpec) -> str:
        return "sd"

    def _real_condition(self, model: torch.nn.ModuleDict, model_id: str | None) -> None:
        from transformers import CLIPVisionModelWithProjection

        from vislaw.encoders.loading import load_checked

        # The image encoder is a CLIP vision tower: the clip family's model types and heads.
        image_encoder_id = self.spec.options.get("image_encoder_id")
        encoder = load_checked(
            CLIPVisionModelWithProjection,
            image_encoder_id or model_id,
            family="clip",
            owner=self.spec.name,
            subfolder=None if image_encoder_id else "image_encoder",
        )
        model["image_encoder"] = encoder

    def _tiny_condition(self, model: torch.nn.ModuleDict) -> int:
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        overrides = tiny_section(self.spec, "image_encoder")
        config = CLIPVisionConfig(**{**TINY_IMAGE_ENCODER, **overrides})
        model["image_encoder"] = CLIPVisionModelWithProjection(config)
        return int(config.projection_dim)

    def _clip_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """[-1, 1] model input -> the CLIP image encoder's 224 px input: as the model card's
        transform (bicubic, CLIP mean/std), or under ``paper`` as the authors' (bilinear,
        [-1, 1] kept)."""
        import torch
        import torch.nn.functional as F

        if self.spec.is_paper:
            return F.interpolate(pixels, size=(CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE), mode="bilinear")
        unit = (pixels + 1) / 2
        unit = F.interpolate(
            unit, size=(CLIP_IMAGE_SIZE, CLIP_IMAGE_SIZE), mode="bicubic", antialias=False
        ).clamp(0, 1)
        mean = torch.tensor(CLIP_MEAN, device=unit.device, dtype=unit.dtype).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=unit.device, dtype=unit.dtype).view(1, 3, 1, 1)
        return (unit - mean) / std

    def _unet_condition(self, pixels: torch.Tensor) -> tuple[torch.Tensor, None]:
        embeds = self.model["image_encoder"](pixel_values=self._clip_pixels(pixels)).image_embeds
        return embeds.unsqueeze(1), None

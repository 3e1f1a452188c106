"""Stable Diffusion UNets (SD 1.5, SD 2.1, SDXL) as vision encoders, DIFT-style.

Feature: the output of ``unet.up_blocks[up_block]`` (default 0, the first decoder block, which
ends with an upsampler) for the VAE latent of the image noised to timestep ``t`` (default 1)
with DDPM's ``add_noise`` (the model's own scheduler betas), conditioned on the empty prompt.
Grid: input / 8 (VAE) / 2**downsamplings * 2**(up_block + 1): SD 1.5/2.1 (three UNet
downsamplings) at 768 px -> 24x24x1280; SDXL (two) at 512 px -> 32x32x1280.

SDXL is told apart by ``options.variant: sdxl``; without it, a model id containing "xl" is taken
as SDXL. At load time the UNet's config must agree (``addition_embed_type == "text_time"``), so
a wrong guess fails loudly instead of giving a wrong grid. SDXL's conditioning follows its
pipeline: both text encoders' penultimate layers concatenated, the second one's pooled
``text_embeds``, and ``time_ids`` = (S, S, 0, 0, S, S) for an S px input without cropping.

``protocol: paper`` (the authors' UNet featurizer): SDXL's UNet runs without the pooled text
embedding and time_ids (their forward never adds the ``add_embedding`` term); SD 1.x/2.x are
the same under both protocols.

Tiny twin: 4-block VAE (factor 8), a two-level UNet (one downsampling; up_blocks[0] is at
latent resolution: 128 px -> 16x16x32), one tiny CLIP text encoder (two for
``tiny: {variant: sdxl}``, whose UNet has the text_time addition embedding). Overrides go under
``tiny.vae``, ``tiny.unet`` and ``tiny.text_encoder``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.diffusion import (
    HUB_SECOND_TEXT,
    HUB_TEXT,
    DiffusionEncoder,
    build_tiny_text_encoders,
    build_tiny_vae,
    forward_until,
    load_text_encoders,
    tiny_section,
)

if TYPE_CHECKING:
    import torch

# UNet downsamplings of the real models, per variant.
VARIANT_DOWNSAMPLINGS = {"sd": 3, "sdxl": 2}
# Stable Diffusion's training noise schedule (for the tiny twin; real models load theirs).
SD_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}
_TINY_UNET_COMMON: dict[str, Any] = {
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "attention_head_dim": 4,
    "norm_num_groups": 8,
}
TINY_UNET: dict[str, dict[str, Any]] = {
    # SD 1.x/2.x layout in miniature: attention in the fine blocks, plain block at the bottom.
    "sd": {
        **_TINY_UNET_COMMON,
        "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
        "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    },
    # SDXL layout: attention in the coarse blocks, text_time addition embedding.
    "sdxl": {
        **_TINY_UNET_COMMON,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"),
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "use_linear_projection": True,
    },
}


class SdUnetEncoder(DiffusionEncoder):
    family = "sd_unet"
    tiny_keys = frozenset({"vae", "unet", "text_encoder", "variant"})
    default_up_block: ClassVar[int] = 0
    hub_folders = ("unet", "vae", "scheduler", *HUB_TEXT)

    # ---- static facts ---------------------------------------------------------------------
    @classmethod
    def variant(cls, spec: EncoderSpec) -> str:
        if spec.tiny is not None:
            variant, key = spec.tiny.get("variant", "sd"), "tiny.variant"
        else:
            guess = "sdxl" if "xl" in str(spec.model_id).lower() else "sd"
            variant, key = spec.options.get("variant", guess), "options.variant"
        if variant not in VARIANT_DOWNSAMPLINGS:
            raise ConfigError(
                f"encoders.{spec.name}.{key}",
                f"unknown variant {variant!r}; known: {sorted(VARIANT_DOWNSAMPLINGS)}",
            )
        return variant

    @classmethod
    def hub_folder_names(cls, spec: EncoderSpec) -> tuple[str, ...]:
        """SDXL also loads its second text encoder."""
        second = HUB_SECOND_TEXT if cls.variant(spec) == "sdxl" else ()
        return (*cls.hub_folders, *second)

    @classmethod
    def unet_downsamplings(cls, spec: EncoderSpec) -> int:
        if spec.tiny is None:
            return VARIANT_DOWNSAMPLINGS[cls.variant(spec)]
        unet = {**TINY_UNET[cls.variant(spec)], **tiny_section(spec, "unet")}
        return len(unet["block_out_channels"]) - 1

    @classmethod
    def up_block_index(cls, spec: EncoderSpec) -> int:
        return cls.default_up_block if spec.up_block is None else spec.up_block

    @classmethod
    def authors_reading(cls, spec: EncoderSpec) -> dict[str, tuple[str, int]]:
        """Their ``up_ft_index`` is the UNet decoder block (``up_block``)."""
        return {
            "up_ft_index": ("up_block", cls.up_block_index(spec)),
            "img_size": ("input_size", spec.input_size),
        }

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        latent, downs = cls.latent_side(spec), cls.unet_downsamplings(spec)
        index = cls.up_block_index(spec)
        if index > downs:
            raise ConfigError(f"encoders.{spec.name}.up_block", f"{index} > last up block {downs}")
        if latent % 2**downs:
            raise ConfigError(
                f"encoders.{spec.name}.input_size",
                f"latent side {latent} is not divisible by 2**{downs} (the UNet's downsamplings)",
            )
        # Every up block but the last ends with a 2x upsampler.
        side = latent // 2**downs * 2 ** min(index + 1, downs)
        return side, side

    # ---- building -------------------------------------------------------------------------
    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        import torch
        from diffusers import DDPMScheduler, UNet2DConditionModel

        from vislaw.encoders.loading import load_checked

        unet = load_checked(
            UNet2DConditionModel,
            model_id,
            family=self.family,
            owner=self.spec.name,
            subfolder="unet",
        )
        variant = self.variant(self.spec)
        if (unet.config.addition_embed_type == "text_time") != (variant == "sdxl"):
            raise ConfigError(
                f"encoders.{self.spec.name}.options.variant",
                f"{model_id} is "
                f"{'not ' if variant == 'sdxl' else ''}an SDXL UNet; set variant accordingly",
            )
        downs = len(unet.config.block_out_channels) - 1
        self._check_loaded("the UNet's downsampling count", downs, VARIANT_DOWNSAMPLINGS[variant])
        model = torch.nn.ModuleDict({"vae": self._load_vae(model_id), "unet": unet})
        self.scheduler = DDPMScheduler.from_pretrained(model_id, subfolder="scheduler")
        self._real_condition(model, model_id)
        return model

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        import torch
        from diffusers import DDPMScheduler, UNet2DConditionModel

        model = torch.nn.ModuleDict({"vae": build_tiny_vae(tiny_section(self.spec, "vae"))})
        latent_channels = model["vae"].config.latent_channels
        kwargs = {**TINY_UNET[self.variant(self.spec)], **tiny_section(self.spec, "unet")}
        kwargs.update(
            sample_size=self.latent_side(self.spec),
            in_channels=latent_channels,
            out_channels=latent_channels,
            cross_attention_dim=self._tiny_condition(model),
        )
        if kwargs.get("addition_embed_type") == "text_time":
            pooled = model.text_embeds.shape[-1]
            kwargs["projection_class_embeddings_input_dim"] = (
                pooled + 6 * kwargs["addition_time_embed_dim"]
            )
        model["unet"] = UNet2DConditionModel(**kwargs)
        self.scheduler = DDPMScheduler(**SD_SCHEDULER)
        return model

    # ---- conditioning (what sd_image_variations replaces) ---------------------------------
    @property
    def is_sdxl(self) -> bool:
        return self.variant(self.spec) == "sdxl"

    def _real_condition(self, model: torch.nn.ModuleDict, model_id: str | None) -> None:
        folders = [("text_encoder", "tokenizer", False)]
        if self.is_sdxl:
            folders.append(("text_encoder_2", "tokenizer_2", True))
        self._register_text_condition(
            model, load_text_encoders(str(model_id), folders, self.spec.name, self.family)
        )

    def _tiny_condition(self, model: torch.nn.ModuleDict) -> int:
        """Attach the tiny conditioning; returns the UNet's cross-attention width."""
        count = 2 if self.is_sdxl else 1
        overrides = tiny_section(self.spec, "text_encoder")
        encoders = build_tiny_text_encoders(overrides, count, with_projection=(False, True))
        return self._register_text_condition(model, encoders)

    def _register_text_condition(
        self, model: torch.nn.ModuleDict, encoders: list[tuple[torch.nn.Module, torch.Tensor]]
    ) -> int:
        import torch

        tokens, pooled = self._text_condition(encoders, layer=-2 if self.is_sdxl else None)
        model.register_buffer("prompt_embeds", tokens)
        if self.is_sdxl:
            size = self.spec.input_size
            model.register_buffer("text_embeds", pooled[-1])
            time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)
            model.register_buffer("time_ids", time_ids)
        return int(tokens.shape[-1])

    def _unet_condition(
        self, pixels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        """(encoder_hidden_states, added_cond_kwargs) for a batch."""
        batch = pixels.shape[0]
        context = self.model.prompt_embeds.expand(batch, -1, -1)
        if not self.is_sdxl:
            return context, None
        added = {
            "text_embeds": self.model.text_embeds.expand(batch, -1),
            "time_ids": self.model.time_ids.expand(batch, -1),
        }
        return context, added

    # ---- running --------------------------------------------------------------------------
    @property
    def up_block(self) -> int:
        return self.up_block_index(self.spec)

    @property
    def channels(self) -> int:
        return int(list(reversed(self.model["unet"].config.block_out_channels))[self.up_block])

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        latents = self._latents(pixels)
        t = torch.full((pixels.shape[0],), self.timestep, dtype=torch.long, device=latents.device)
        noisy = self.scheduler.add_noise(latents, self._noise(latents), t)
        context, added = self._unet_condition(pixels)
        unet = self.model["unet"]
        with without_added_embedding(unet, self.spec.is_paper and added is not None):
            hidden = forward_until(
                unet.up_blocks[self.up_block],
                lambda: unet(noisy, t, encoder_hidden_states=context, added_cond_kwargs=added),
            )
        return hidden.flatten(2).transpose(1, 2)


@contextlib.contextmanager
def without_added_embedding(unet: torch.nn.Module, active: bool) -> Iterator[None]:
    """While active, the UNet's ``add_embedding`` (SDXL's pooled text + time_ids term) adds
    zero to the timestep embedding, as in the authors' UNet forward, which never computes it."""
    import torch

    def zero(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(output)

    handle = unet.add_embedding.register_forward_hook(zero) if active else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()

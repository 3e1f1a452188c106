"""Stable Diffusion 3 (MMDiT, rectified flow) as a vision encoder.

Feature: the image-token output of the last joint transformer block, 2x2 space-to-depth'd as
for DiT: input/8/patch/2 on a side, 4*D channels (SD3-medium at 512 px -> 16x16x6144).

Noise: SD3 is trained with rectified flow, not DDPM. For timestep ``t`` (default 1) we use
sigma = t / num_train_timesteps (1000) and noisy = (1 - sigma) * latent + sigma * noise, the
training-time interpolation, without the inference schedule's shift; the transformer receives
``timestep = t`` as the pipeline passes it (sigma * 1000). Latents are the VAE posterior mean,
``(mean - shift_factor) * scaling_factor``.

Conditioning without T5, as diffusers' pipeline runs with ``text_encoder_3=None``: the empty
prompt through both CLIP text encoders (penultimate layers concatenated, zero-padded to the
joint attention width; pooled = both projected ``text_embeds`` concatenated), followed by
``t5_tokens`` zero tokens where T5's would be (256, the pipeline's default
``max_sequence_length``; ``options.t5_tokens`` changes it).

``protocol: paper`` (the authors' SD3 featurizer): as many zero T5 tokens as the CLIP tokenizer
pads to (their vendored diffusers sizes the T5 padding by the CLIP tokenizer's length: 77 for the
real model), latents only scaled (no ``shift_factor`` subtraction), and
their flow-matching ``add_noise``, ``t * latent + (1 - t) * noise`` with the raw timestep as
``t``: at t=1 the clean latent, which the transformer then sees with ``timestep = 1``; channel
order (dx, dy, D). ``layer`` picks the
transformer block (default -1, the last).

Tiny twin: the tiny VAE with 16 latent channels (like SD3's), two tiny CLIP text encoders with
projection, a 2-layer MMDiT of width 16 (256 px -> 8x8x64) and 8 zero T5 tokens. Overrides
under ``tiny.vae``, ``tiny.transformer``, ``tiny.text_encoder`` and ``tiny.t5_tokens``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.diffusion import (
    HUB_SECOND_TEXT,
    HUB_TEXT,
    TINY_VAE,
    DiffusionTransformerEncoder,
    build_tiny_text_encoders,
    build_tiny_vae,
    forward_until,
    load_text_encoders,
    tiny_section,
)

if TYPE_CHECKING:
    import torch

T5_TOKENS = 256
TINY_T5_TOKENS = 8
NUM_TRAIN_TIMESTEPS = 1000
TINY_SD3_VAE = {**TINY_VAE, "latent_channels": 16, "scaling_factor": 1.5305, "shift_factor": 0.0609}
TINY_SD3: dict[str, Any] = {
    "num_layers": 2,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "caption_projection_dim": 16,  # must equal heads * head_dim (joint attention)
    "joint_attention_dim": 96,  # T5's width in the real model; CLIP's is padded up to it
    "patch_size": 2,
    "pos_embed_max_size": 64,
}
TEXT_FOLDERS = [("text_encoder", "tokenizer", True), ("text_encoder_2", "tokenizer_2", True)]


class Sd3Encoder(DiffusionTransformerEncoder):
    family = "sd3"
    hub_folders = ("transformer", "vae", "scheduler", *HUB_TEXT, *HUB_SECOND_TEXT)
    tiny_vae_defaults = TINY_SD3_VAE
    tiny_transformer = TINY_SD3
    tiny_keys = frozenset({"vae", "transformer", "text_encoder", "t5_tokens"})

    def t5_tokens(self, clip_tokens: int) -> int:
        """Zero T5 tokens after the ``clip_tokens`` CLIP ones: an explicit ``tiny.t5_tokens`` /
        ``options.t5_tokens``, else the CLIP tokenizer's length under ``paper`` (77 for the real
        model; a twin with a shorter tokenizer gets its own length, as the authors' code would),
        else 256 (8 for the tiny twin)."""
        if self.spec.tiny is not None and "t5_tokens" in self.spec.tiny:
            return int(self.spec.tiny["t5_tokens"])
        if self.spec.tiny is None and "t5_tokens" in self.spec.options:
            return int(self.spec.options["t5_tokens"])
        if self.spec.is_paper:
            return clip_tokens
        return TINY_T5_TOKENS if self.spec.tiny is not None else T5_TOKENS

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel

        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(model_id, subfolder="scheduler")
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        from vislaw.encoders.loading import load_checked

        transformer = load_checked(
            SD3Transformer2DModel,
            model_id,
            family=self.family,
            owner=self.spec.name,
            subfolder="transformer",
        )
        self._check_transformer(transformer)
        model = torch.nn.ModuleDict({"vae": self._load_vae(model_id), "transformer": transformer})
        encoders = load_text_encoders(str(model_id), TEXT_FOLDERS, self.spec.name, self.family)
        self._register_condition(model, encoders, transformer.config.joint_attention_dim)
        return model

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        import torch
        from diffusers import SD3Transformer2DModel

        self.num_train_timesteps = NUM_TRAIN_TIMESTEPS
        vae = build_tiny_vae(tiny_section(self.spec, "vae"), self.tiny_vae_defaults)
        model = torch.nn.ModuleDict({"vae": vae})
        kwargs = {**TINY_SD3, **tiny_section(self.spec, "transformer")}
        encoders = build_tiny_text_encoders(
            tiny_section(self.spec, "text_encoder"), 2, with_projection=(True, True)
        )
        self._register_condition(model, encoders, kwargs["joint_attention_dim"])
        latent = self.latent_side(self.spec)
        kwargs.update(
            sample_size=latent,
            pos_embed_max_size=max(kwargs["pos_embed_max_size"], latent // self.patch(self.spec)),
            in_channels=vae.config.latent_channels,
            out_channels=vae.config.latent_channels,
            pooled_projection_dim=model.pooled_projections.shape[-1],
        )
        model["transformer"] = SD3Transformer2DModel(**kwargs)
        return model

    def _register_condition(
        self,
        model: torch.nn.ModuleDict,
        encoders: list[tuple[torch.nn.Module, torch.Tensor]],
        joint_dim: int,
    ) -> None:
        import torch
        import torch.nn.functional as F

        tokens, pooled = self._text_condition(encoders, layer=-2)
        if tokens.shape[-1] > joint_dim:
            raise ConfigError(
                f"encoders.{self.spec.name}",
                f"CLIP width {tokens.shape[-1]} exceeds the joint attention width {joint_dim}",
            )
        clip = F.pad(tokens, (0, joint_dim - tokens.shape[-1]))
        t5 = torch.zeros(1, self.t5_tokens(tokens.shape[1]), joint_dim, dtype=clip.dtype)
        model.register_buffer("prompt_embeds", torch.cat([clip, t5], dim=1))
        model.register_buffer("pooled_projections", torch.cat(pooled, dim=-1))

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        transformer = self.model["transformer"]
        latents = self._latents(pixels)
        batch = pixels.shape[0]
        if self.spec.is_paper:
            # Their scheduler's add_noise: t * latent + (1 - t) * noise with the raw timestep
            # as t, so t = 1 (the only value they used) gives the clean latent.
            t_raw = float(self.timestep)
            noisy = t_raw * latents + (1 - t_raw) * self._noise(latents)
        else:
            sigma = self.timestep / self.num_train_timesteps
            noisy = (1 - sigma) * latents + sigma * self._noise(latents)
        t = torch.full((batch,), float(self.timestep), dtype=latents.dtype, device=latents.device)
        context = self.model.prompt_embeds.expand(batch, -1, -1)
        pooled = self.model.pooled_projections.expand(batch, -1)
        _, tokens = forward_until(
            self._block(),
            lambda: transformer(
                noisy, encoder_hidden_states=context, pooled_projections=pooled, timestep=t
            ),
        )
        return self._to_grid(tokens, latents)

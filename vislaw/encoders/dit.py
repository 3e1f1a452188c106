"""DiT (class-conditional latent diffusion transformer) as a vision encoder.

Feature: the output of the last transformer block (before the final ada-norm and projection)
for the VAE latent noised to timestep ``t`` (default 1, DDPM ``add_noise`` with the model's
scheduler betas), unconditional: the class label is the null class (index
``num_embeds_ada_norm``, the row classifier-free guidance uses). The tokens (latent / patch on
a side) are put back on their grid and 2x2 space-to-depth'd, so the grid is input/8/patch/2 with
4*D channels: DiT-XL/2 at 512 px -> 16x16x4608, comparable in size to the UNet features.

``protocol: paper`` (the authors' DiT featurizer): no class conditioning at all (each block's
ada-norm embedding is the timestep embedding alone, not plus a class row) and channel order
(dx, dy, D); for the C score the feature map is transposed, as their C-score script did.
``layer`` picks the transformer block (default -1, the last).

Tiny twin: the 4-block tiny VAE (factor 8), a 2-layer DiT of width 16 with patch 2 and 10
classes (256 px -> 8x8x64). Overrides under ``tiny.vae`` and ``tiny.transformer``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vislaw.encoders.diffusion import (
    DiffusionTransformerEncoder,
    build_tiny_vae,
    forward_until,
    tiny_section,
)

if TYPE_CHECKING:
    import torch

TINY_DIT: dict[str, Any] = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "num_layers": 2,
    "patch_size": 2,
    "num_embeds_ada_norm": 10,
}
# DiT was trained with the linear DDPM schedule.
DIT_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.0001,
    "beta_end": 0.02,
    "beta_schedule": "linear",
}


class DitEncoder(DiffusionTransformerEncoder):
    family = "dit"
    hub_folders = ("transformer", "vae", "scheduler")
    tiny_transformer = TINY_DIT

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        import torch
        from diffusers import DDPMScheduler, DiTTransformer2DModel

        self.scheduler = DDPMScheduler.from_pretrained(model_id, subfolder="scheduler")
        from vislaw.encoders.loading import load_checked

        transformer = load_checked(
            DiTTransformer2DModel,
            model_id,
            family=self.family,
            owner=self.spec.name,
            subfolder="transformer",
        )
        self._check_transformer(transformer)
        return torch.nn.ModuleDict({"vae": self._load_vae(model_id), "transformer": transformer})

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        import torch
        from diffusers import DDPMScheduler, DiTTransformer2DModel

        vae = build_tiny_vae(tiny_section(self.spec, "vae"))
        kwargs = {**TINY_DIT, **tiny_section(self.spec, "transformer")}
        kwargs.update(
            in_channels=vae.config.latent_channels,
            sample_size=self.latent_side(self.spec),
            patch_size=self.patch(self.spec),
        )
        self.scheduler = DDPMScheduler(**DIT_SCHEDULER)
        return torch.nn.ModuleDict({"vae": vae, "transformer": DiTTransformer2DModel(**kwargs)})

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch

        transformer = self.model["transformer"]
        latents = self._latents(pixels)
        batch = pixels.shape[0]
        t = torch.full((batch,), self.timestep, dtype=torch.long, device=latents.device)
        noisy = self.scheduler.add_noise(latents, self._noise(latents), t)
        null_class = torch.full(
            (batch,), transformer.config.num_embeds_ada_norm, dtype=torch.long, device=t.device
        )
        with timestep_only_conditioning(transformer, self.spec.is_paper):
            tokens = forward_until(
                self._block(), lambda: transformer(noisy, timestep=t, class_labels=null_class)
            )
        return self._to_grid(tokens, latents)

    def finish_c_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``paper``: the authors' C-score script transposed the DiT map (rows <-> columns)."""
        if not self.spec.is_paper:
            return feats
        rows, cols = self.grid
        grid = feats.reshape(feats.shape[0], rows, cols, feats.shape[-1])
        return grid.transpose(1, 2).reshape(feats.shape)


@contextlib.contextmanager
def timestep_only_conditioning(transformer: torch.nn.Module, active: bool) -> Iterator[None]:
    """While active, every ``CombinedTimestepLabelEmbeddings`` of ``transformer`` returns the
    timestep embedding alone (the class embedding is not added), as the authors' DiT did."""
    from diffusers.models.embeddings import CombinedTimestepLabelEmbeddings

    def timestep_only(module: torch.nn.Module, args: tuple, kwargs: dict, _out: Any) -> Any:
        timestep = kwargs.get("timestep", args[0] if args else None)
        dtype = kwargs.get("hidden_dtype", args[2] if len(args) > 2 else None)
        projected = module.time_proj(timestep)
        return module.timestep_embedder(projected.to(dtype=dtype))

    handles = []
    if active:
        for module in transformer.modules():
            if isinstance(module, CombinedTimestepLabelEmbeddings):
                handles.append(module.register_forward_hook(timestep_only, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()

"""Feature fusion: several encoders' features concatenated along channels (e.g. CLIP+DINOv2).

A fusion has no weights of its own: its members are full encoders built from their own specs
(real or tiny), each keeping its own preprocessing (input size and normalisation). Per batch
each member runs once; the grids must agree (checked from arithmetic before anything is built),
so the concatenation is token by token. ``preprocess`` therefore returns one tensor per member.

Its env: "transformers" when every member's family lives in that stack, else "diffusers"
(which also holds transformers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec, VisionEncoder, registered_families

if TYPE_CHECKING:
    import torch
    from PIL import Image


def _family(spec: EncoderSpec) -> type[VisionEncoder]:
    """The class of a member's family, from the family index the registry registers
    (vislaw.encoders.base.registered_families: this module cannot import the registry, which
    imports it)."""
    families = registered_families()
    if spec.family not in families:
        raise KeyError(
            f"fusion member '{spec.name}': unknown encoder family '{spec.family}' "
            f"(known: {sorted(families)})"
        )
    return families[spec.family]


class FusionEncoder(VisionEncoder):
    family = "fusion"
    # The superset stack; env_for picks the lighter one when every member allows it.
    conda_env = "diffusers"

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        if len(spec.members) < 2:
            raise ConfigError(
                f"encoders.{spec.name}.members", "a fusion needs at least two members"
            )
        grids = {m.name: _family(m).token_grid(m) for m in spec.members}
        if len(set(grids.values())) != 1:
            raise ConfigError(
                f"encoders.{spec.name}.members", f"token grids differ, cannot concatenate: {grids}"
            )
        return next(iter(grids.values()))

    @classmethod
    def env_for(cls, spec: EncoderSpec) -> str:
        if spec.env:
            return spec.env
        envs = {_family(m).conda_env for m in spec.members}
        return "transformers" if envs == {"transformers"} else "diffusers"

    def _build_members(self) -> torch.nn.Module:
        import torch

        self.token_grid(self.spec)  # refuse mismatched grids before loading anything
        self.members: list[VisionEncoder] = [
            _family(m)(m, device=str(self.device), dtype=self.dtype) for m in self.spec.members
        ]
        return torch.nn.ModuleList([m.model for m in self.members])

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        """Build the members, each from its own spec (a fusion has no checkpoint of its own)."""
        return self._build_members()

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        """Same as :meth:`_load_pretrained`: whether a member is tiny is its own spec's choice."""
        return self._build_members()

    @property
    def channels(self) -> int:
        return sum(m.channels for m in self.members)

    def preprocess(
        self, images: Sequence[Image.Image], purpose: str = "mllm"
    ) -> list[torch.Tensor]:
        """One tensor per member, each with that member's size, geometry and normalisation
        (each member's own protocol)."""
        return [m.preprocess(images, purpose) for m in self.members]

    @classmethod
    def layout_for(cls, spec: EncoderSpec) -> str:
        """The members' layouts in channel order (a projector sees their concatenation)."""
        return "+".join(_family(m).layout_for(m) for m in spec.members)

    def finish_c_features(self, feats: torch.Tensor) -> torch.Tensor:
        import torch

        parts = torch.split(feats, [m.channels for m in self.members], dim=-1)
        return torch.cat(
            [m.finish_c_features(p) for m, p in zip(self.members, parts, strict=True)], -1
        )

    def _forward(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch

        parts = [m.encode(p) for m, p in zip(self.members, pixels, strict=True)]
        return torch.cat([p.to(self.device) for p in parts], dim=-1)

    def encode(self, pixels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Members' features (B, H*W, sum C) from :meth:`preprocess`'s per-member tensors."""
        if len(pixels) != len(self.members):
            raise ValueError(
                f"fusion '{self.spec.name}' takes {len(self.members)} pixel tensors (one per "
                f"member, from preprocess), got {len(pixels)}"
            )
        return self._checked(self._forward(pixels), pixels[0].shape[0])

"""What the ViT families (CLIP, SigLIP, DINOv2) share: patch grid, hidden-state layer, prefix tokens.

A ViT family differs only in its transformers classes, its tiny defaults, its normalisation and
how many prefix tokens (CLS, registers) precede the patch tokens; the rest lives here once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.encoders.base import EncoderSpec, VisionEncoder

if TYPE_CHECKING:
    import torch


class ViTEncoder(VisionEncoder):
    """Patch tokens of ``hidden_states[layer]`` of a transformers vision transformer.

    Subclasses name their transformers ``model_class``/``config_class`` (imported lazily, so the
    registry stays cheap to import) and give ``tiny_defaults`` for the random-init twin.
    """

    conda_env = "transformers"
    model_class: ClassVar[str]
    config_class: ClassVar[str]
    tiny_defaults: ClassVar[dict[str, Any]]
    default_patch: ClassVar[int] = 14
    default_layer: ClassVar[int] = -2
    # Whether forward takes ``interpolate_pos_encoding`` (DINOv2 always interpolates).
    can_interpolate: ClassVar[bool] = True

    @classmethod
    def patch(cls, spec: EncoderSpec) -> int:
        if spec.patch_size:
            return spec.patch_size
        return int((spec.tiny or {}).get("patch_size", cls.default_patch))

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        side = spec.input_size // cls.patch(spec)
        return side, side

    def _config_kwargs(self, overrides: dict[str, Any]) -> dict[str, Any]:
        kwargs = {**self.tiny_defaults, **overrides}
        kwargs.update(image_size=self.spec.input_size, patch_size=self.patch(self.spec))
        return kwargs

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        import transformers

        from vislaw.encoders.loading import load_checked

        model_class = getattr(transformers, self.model_class)
        return load_checked(model_class, model_id, family=self.family, owner=self.spec.name)

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        import transformers

        config = getattr(transformers, self.config_class)(**self._config_kwargs(overrides))
        return getattr(transformers, self.model_class)(config)

    @property
    def channels(self) -> int:
        return int(self.model.config.hidden_size)

    def n_prefix_tokens(self) -> int:
        """Tokens before the patch tokens (CLS, registers) that the feature drops."""
        return 1

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        layer = self.default_layer if self.spec.layer is None else self.spec.layer
        kwargs: dict[str, Any] = {}
        if self.can_interpolate and self.spec.input_size != self.model.config.image_size:
            # A checkpoint used at another resolution than it was trained at (e.g. CLIP-L/14 at
            # 336): interpolate its position embeddings instead of failing.
            kwargs["interpolate_pos_encoding"] = True
        out = self.model(pixel_values=pixels, output_hidden_states=True, **kwargs)
        return out.hidden_states[layer][:, self.n_prefix_tokens() :]

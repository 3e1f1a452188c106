"""What the ViT families (CLIP, SigLIP, DINOv2) share: patch grid, hidden-state layer, prefix tokens.

A ViT family differs only in its transformers classes, its tiny defaults, its normalisation and
how many prefix tokens (CLS, registers) precede the patch tokens; the rest lives here once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec, VisionEncoder
from vislaw.encoders.checks import (
    check_checkpoint_facts,
    check_index,
    checkpoint_config,
    vision_config,
)

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

    @classmethod
    def depth(cls, spec: EncoderSpec) -> int | None:
        """Transformer layers (tiny defaults + overrides, or the cached checkpoint config)."""
        if spec.tiny is not None:
            depth = {**getattr(cls, "tiny_defaults", {}), **dict(spec.tiny)}.get(
                "num_hidden_layers"
            )
            return int(depth) if depth is not None else None
        config = checkpoint_config(spec)
        if config is None:
            return None
        depth = vision_config(config).get("num_hidden_layers")
        return int(depth) if isinstance(depth, int) else None

    @classmethod
    def check_spec(cls, spec: EncoderSpec) -> None:
        """The checkpoint's patch size, an input size cut into whole patches, and ``layer``
        inside ``hidden_states`` (embeddings + layers)."""
        patch = cls.patch(spec)
        key = f"encoders.{spec.name}"
        # The checkpoint's image_size is read by the job, not here: every ViT family
        # interpolates its position embeddings, so an input_size other than the checkpoint's
        # is legitimate.
        check_checkpoint_facts(spec, {"patch_size": ("patch_size", patch)})
        if spec.input_size < patch:
            raise ConfigError(
                f"{key}.input_size", f"{spec.input_size} is below the patch size {patch}"
            )
        if spec.input_size % patch:
            raise ConfigError(
                f"{key}.input_size",
                f"{spec.input_size} is not a multiple of the patch size {patch} "
                f"(the last {spec.input_size % patch} pixel rows/columns would be dropped)",
            )
        if spec.layer is not None:
            depth = cls.depth(spec)
            if depth is not None:
                check_index(
                    f"{key}.layer", spec.layer, depth + 1, "hidden_states (embeddings + layers)"
                )

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

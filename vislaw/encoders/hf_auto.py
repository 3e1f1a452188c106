"""Any transformers vision backbone, through ``AutoModel`` and ``AutoImageProcessor``.

For the encoders that came after the paper (SigLIP 2, DINOv2 with registers, DINOv3, Web-SSL
DINO, AIMv2, ...) without a family module each. What differs between them is read from the
checkpoint, not written here:

- patch size: the entry's ``patch_size``, else the checkpoint's config (its ``vision_config``
  for a dual-tower model such as SigLIP 2's ``SiglipModel``);
- prefix tokens (CLS, registers): whatever the model returns before its grid of patch tokens
  (sequence length minus rows x cols), or ``options.prefix_tokens``;
- normalisation: the checkpoint's image processor (``image_mean`` / ``image_std``), or
  ``options.mean`` / ``options.std``;
- NaFlex models (``siglip2_vision_model``): fed a fixed patch budget, the square input cut into
  ``(input_size / patch)^2`` patches with a full attention mask.

Remote code (InternViT, C-RADIO) runs only when the entry says ``options.trust_remote_code:
true``; never by default. Loaded through :func:`vislaw.encoders.loading.load_checked`: any
MISSING, UNEXPECTED or size-MISMATCHED tensor is refused, as for the dedicated families. Feature: ``hidden_states[layer]`` (default -2) without the prefix.

Tiny twin: ``tiny: {model_type: <transformers model_type>, ...overrides}`` built with
``AutoConfig.for_model`` and ``AutoModel.from_config``, width 32, 3 layers, 4 heads.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec, VisionEncoder, patch_grid
from vislaw.encoders.checks import cached_json, vision_config

if TYPE_CHECKING:
    import torch

TINY_HF_AUTO = {
    "hidden_size": 32,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "mlp_ratio": 2,
}
NAFLEX_TYPES = frozenset({"siglip2_vision_model"})


class HfAutoEncoder(VisionEncoder):
    family = "hf_auto"
    conda_env = "transformers"
    default_layer: ClassVar[int] = -2
    # The checkpoint's image processor gives the normalisation (and NaFlex's patching).
    hub_files: ClassVar[tuple[str, ...] | None] = (
        "config.json",
        "model*.safetensors",
        "model.safetensors.index.json",
        "preprocessor_config.json",
    )

    @classmethod
    def hub_patterns(cls, spec: EncoderSpec) -> tuple[str, ...] | None:
        """Remote code (``options.trust_remote_code``) lives in the repo's ``*.py`` files."""
        files = cls.hub_files or ()
        return (*files, "*.py") if spec.options.get("trust_remote_code") else files

    @classmethod
    def patch(cls, spec: EncoderSpec) -> int:
        if spec.patch_size:
            return spec.patch_size
        if spec.tiny is not None:
            return int(spec.tiny.get("patch_size", 14))
        # config.json from a local folder or the Hub cache, without downloading or importing
        # torch (the config check runs before any job)
        config = cached_json(str(spec.model_id), "config.json")
        if config is None or "patch_size" not in vision_config(config):
            raise ConfigError(
                f"encoders.{spec.name}.patch_size",
                f"needed for family hf_auto: {spec.model_id}'s config.json is not local or "
                "cached yet (run prepare, or set patch_size)",
            )
        return int(vision_config(config)["patch_size"])

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        return patch_grid(spec, cls.patch(spec))

    def __init__(self, spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None):
        super().__init__(spec, device, dtype)
        self.mean, self.std = self._normalisation()

    # ---- building ----------------------------------------------------------------------------
    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        from transformers import AutoModel

        from vislaw.encoders.loading import load_checked

        trust = bool(self.spec.options.get("trust_remote_code", False))
        model = load_checked(
            AutoModel, model_id, family=self.family, owner=self.spec.name, trust_remote_code=trust
        )
        # A dual-tower checkpoint (SigLIP 2, CLIP-style): its vision tower alone.
        return getattr(model, "vision_model", model)

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        from transformers import AutoConfig, AutoModel

        if "model_type" not in overrides:
            raise ConfigError(
                f"encoders.{self.spec.name}.tiny.model_type",
                "family hf_auto builds its twin from a transformers model_type "
                "(e.g. dinov2_with_registers, dinov3_vit, aimv2_vision_model)",
            )
        kwargs = {**TINY_HF_AUTO, **overrides, "patch_size": self.patch(self.spec)}
        model_type = kwargs.pop("model_type")
        side = self.spec.input_size // kwargs["patch_size"]
        if model_type in NAFLEX_TYPES:
            kwargs.setdefault("num_patches", side * side)
        else:
            kwargs.setdefault("image_size", self.spec.input_size)
        return AutoModel.from_config(AutoConfig.for_model(model_type, **kwargs))

    def _normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``options.mean``/``std``, else the checkpoint's processor, else (twin) [-1, 1]."""
        options = self.spec.options
        if "mean" in options and "std" in options:
            return tuple(options["mean"]), tuple(options["std"])
        if self.spec.is_tiny:
            return self.mean, self.std
        from transformers import AutoImageProcessor

        trust = bool(options.get("trust_remote_code", False))
        try:
            processor = AutoImageProcessor.from_pretrained(
                self.spec.model_id, trust_remote_code=trust
            )
        except (OSError, ValueError) as err:
            raise ConfigError(
                f"encoders.{self.spec.name}.options",
                f"{self.spec.model_id} has no image processor to read mean/std from ({err}); "
                "set options.mean and options.std",
            ) from err
        return tuple(processor.image_mean), tuple(processor.image_std)

    # ---- running -----------------------------------------------------------------------------
    @property
    def channels(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def is_naflex(self) -> bool:
        return self.model.config.model_type in NAFLEX_TYPES

    def _inputs(self, pixels: torch.Tensor) -> dict[str, Any]:
        """The model's keyword inputs: pixels, or for NaFlex the square cut into row-major
        patches (each patch flattened row, column, channel, as its processor does) with a
        full mask and the grid's shape."""
        import torch

        if not self.is_naflex:
            inputs: dict[str, Any] = {"pixel_values": pixels}
            params = inspect.signature(self.model.forward).parameters
            if "interpolate_pos_encoding" in params:
                inputs["interpolate_pos_encoding"] = True
            return inputs
        batch, channels = pixels.shape[:2]
        rows, cols = self.grid
        patch = self.patch(self.spec)
        patches = pixels.reshape(batch, channels, rows, patch, cols, patch)
        patches = patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, rows * cols, -1)
        return {
            "pixel_values": patches,
            "pixel_attention_mask": torch.ones(batch, rows * cols, dtype=torch.long),
            "spatial_shapes": torch.tensor([[rows, cols]] * batch, dtype=torch.long),
        }

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        layer = self.default_layer if self.spec.layer is None else self.spec.layer
        out = self.model(**self._inputs(pixels), output_hidden_states=True)
        hidden = out.hidden_states[layer]
        rows, cols = self.grid
        prefix = self.spec.options.get("prefix_tokens", hidden.shape[1] - rows * cols)
        if int(prefix) < 0:
            raise RuntimeError(
                f"encoder '{self.spec.name}' returned {hidden.shape[1]} tokens, fewer than its "
                f"{rows}x{cols} grid"
            )
        return hidden[:, int(prefix) :]

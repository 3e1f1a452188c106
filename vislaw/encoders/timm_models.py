"""Any timm backbone (Perception Encoder, timm-hosted SigLIP 2 / DINOv3, ViTs with registers).

Real: ``timm.create_model`` with ``pretrained=True``: a Hub id (``timm/vit_pe_core_large_
patch14_336.fb``) through timm's ``hf-hub:`` loader, or a local folder (``config.json`` with
``architecture`` and ``model_args``, plus the weights, as ``timm.models.save_for_hf`` writes
them) through ``local-dir:``. Normalisation from the model's own data config
(``timm.data.resolve_model_data_config``). Feature: ``forward_intermediates`` of block ``layer``
(default -2), without timm's prefix tokens (CLS, registers), as a row-major token grid.

The grid is ``input_size / patch_size`` and the entry must give ``patch_size`` for a real
checkpoint (timm's config does not state it; for a CNN it is the chosen stage's total stride).
Tiny twin: ``tiny: {model_name: <timm architecture>, ...its keywords}``, built with
``pretrained=False``; without ``model_name`` a 3-block ViT of width 32 (plus any overrides).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec, VisionEncoder, patch_grid

if TYPE_CHECKING:
    import torch

TINY_TIMM: dict[str, Any] = {
    "model_name": "vit_small_patch16_224",
    "embed_dim": 32,
    "depth": 3,
    "num_heads": 4,
}


class TimmEncoder(VisionEncoder):
    family = "timm"
    conda_env = "open_clip"  # the env that installs timm
    default_layer: ClassVar[int] = -2

    @classmethod
    def patch(cls, spec: EncoderSpec) -> int:
        if spec.patch_size:
            return spec.patch_size
        if spec.tiny is not None:
            return int(spec.tiny.get("patch_size", 16))
        raise ConfigError(
            f"encoders.{spec.name}.patch_size",
            "needed for family timm (timm's config does not state it): the patch size, or for "
            "a CNN the chosen stage's total stride",
        )

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        return patch_grid(spec, cls.patch(spec))

    def __init__(self, spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None):
        super().__init__(spec, device, dtype)
        import timm.data

        data = timm.data.resolve_model_data_config(self.model)
        self.mean, self.std = tuple(data["mean"]), tuple(data["std"])

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        source = str(model_id)
        prefix = "local-dir:" if Path(source).is_dir() else "hf-hub:"
        return _create(prefix + source, pretrained=True, img_size=self.spec.input_size)

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        # The small-ViT defaults belong to the default architecture; another one takes its own
        # keywords only.
        kwargs = dict(overrides) if "model_name" in overrides else {**TINY_TIMM, **overrides}
        name = kwargs.pop("model_name")
        kwargs.update(patch_size=self.patch(self.spec), img_size=self.spec.input_size)
        return _create(name, pretrained=False, **kwargs)

    @property
    def channels(self) -> int:
        return int(self.model.num_features)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        layer = self.default_layer if self.spec.layer is None else self.spec.layer
        (grid,) = self.model.forward_intermediates(pixels, indices=[layer], intermediates_only=True)
        return grid.flatten(2).transpose(1, 2)


def _create(name: str, *, pretrained: bool, **kwargs: Any) -> torch.nn.Module:
    """``timm.create_model`` without a head, at the spec's size where the architecture takes
    one: ViTs take ``img_size`` (and resample their position embeddings to it), CNNs take any
    size and refuse the keyword, so it is dropped for them."""
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
    except TypeError as err:
        if "img_size" not in str(err) and "patch_size" not in str(err):
            raise
        kwargs = {k: v for k, v in kwargs.items() if k not in ("img_size", "patch_size")}
        return timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)

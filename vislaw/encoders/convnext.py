"""ConvNeXt (ConvLLaVA): LAION's CLIP ConvNeXt-L as a transformers ``ConvNextModel``.

Feature: the last stage's output map (B, C, H, W) read row-major as H*W tokens; the grid is the
input over the total stride (stem patch 4 x 2 per later stage = 32). CLIP mean/std.

``fifth_stage: true`` appends ConvLLaVA's extra stage: a stock transformers ``ConvNextStage``
(stride 2, double width: 1536 -> 3072 channels, 6 blocks for the real model) so that the grid is
input/64 (768/1024/1536 px -> 144/256/576 tokens). It is appended to ``model.encoder.stages``
and the config is updated to five stages, so the result *is* a stock five-stage
``ConvNextModel`` (the layout of ConvLLaVA's released towers): it saves and reloads with the
stock class, and ``encoder.fifth_stage`` is the module later training unfreezes. A fresh stage
is random (seeded): without training it is a random projection of the fourth stage.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.base import CLIP_MEAN, CLIP_STD, EncoderSpec, VisionEncoder, seeded
from vislaw.encoders.checks import check_checkpoint_facts

if TYPE_CHECKING:
    import torch

TINY_CONVNEXT = {
    "hidden_sizes": [8, 16, 32, 64],
    "depths": [1, 1, 1, 1],
    "patch_size": 4,
    # Random blocks with the stock 1e-6 layer scale would be near-identity; make them count.
    "layer_scale_init_value": 1.0,
}
FIFTH_STAGE_DEPTH = 6  # ConvLLaVA's fifth stage
TINY_FIFTH_STAGE_DEPTH = 1
REAL_STEM_PATCH = 4
REAL_NUM_STAGES = 4


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    """``forward`` under non-reentrant activation checkpointing when autograd records."""
    import torch
    from torch.utils.checkpoint import checkpoint

    if not torch.is_grad_enabled():
        return forward(*args, **kwargs)
    return checkpoint(forward, *args, use_reentrant=False, **kwargs)


class ConvNextEncoder(VisionEncoder):
    family = "convnext"
    model_types = frozenset({"convnext"})
    # An image-classification ConvNeXt loaded as the backbone: its classifier.
    unused_heads = (r"classifier\.",)
    conda_env = "transformers"
    mean, std = CLIP_MEAN, CLIP_STD
    # Not in the Law-of-Vision authors' code (ConvLLaVA pads to a square): ``paper`` keeps the
    # letterbox for MLLM features (with LLaVA's truncated pad colour).
    paper_geometry = "letterbox"

    @classmethod
    def stride(cls, spec: EncoderSpec) -> int:
        """Total downsampling: stem patch x 2 per stage after the first (x 2 for a fifth)."""
        tiny = spec.tiny
        if tiny is None:
            patch, stages = spec.patch_size or REAL_STEM_PATCH, REAL_NUM_STAGES
        else:
            patch = spec.patch_size or int(tiny.get("patch_size", TINY_CONVNEXT["patch_size"]))
            stages = len(tiny.get("depths", TINY_CONVNEXT["depths"]))
        return patch * 2 ** (stages - 1 + int(spec.fifth_stage))

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        side = spec.input_size // cls.stride(spec)
        return side, side

    @classmethod
    def check_spec(cls, spec: EncoderSpec) -> None:
        """The checkpoint's stem patch and stage count (the stride arithmetic assumes them; the
        fifth stage is appended), and an input size cut into whole strides."""
        stride = cls.stride(spec)
        check_checkpoint_facts(
            spec,
            {
                "patch_size": ("patch_size", spec.patch_size or REAL_STEM_PATCH),
                "num_stages": ("fifth_stage" if spec.fifth_stage else "model_id", REAL_NUM_STAGES),
            },
        )
        key = f"encoders.{spec.name}.input_size"
        if spec.input_size < stride:
            raise ConfigError(key, f"{spec.input_size} is below the total stride {stride}")
        if spec.input_size % stride:
            raise ConfigError(
                key, f"{spec.input_size} is not a multiple of the total stride {stride}"
            )

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        from transformers import ConvNextModel

        from vislaw.encoders.loading import load_checked

        model = load_checked(ConvNextModel, model_id, family=self.family, owner=self.spec.name)
        if self.spec.fifth_stage:
            if model.config.num_stages != REAL_NUM_STAGES:
                raise ConfigError(
                    f"encoders.{self.spec.name}.fifth_stage",
                    f"{model_id} already has "
                    f"{model.config.num_stages} stages; set fifth_stage: false",
                )
            with seeded(self.spec.seed):
                self._append_fifth_stage(model, FIFTH_STAGE_DEPTH)
        return model

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        from transformers import ConvNextConfig, ConvNextModel

        fifth_depth = int(overrides.pop("fifth_stage_depth", TINY_FIFTH_STAGE_DEPTH))
        kwargs = {**TINY_CONVNEXT, **overrides, "image_size": self.spec.input_size}
        if self.spec.patch_size:
            kwargs["patch_size"] = self.spec.patch_size
        kwargs["num_stages"] = len(kwargs["depths"])
        model = ConvNextModel(ConvNextConfig(**kwargs))
        if self.spec.fifth_stage:
            self._append_fifth_stage(model, fifth_depth)
        return model

    @staticmethod
    def _append_fifth_stage(model: torch.nn.Module, depth: int) -> None:
        """Turn a four-stage ConvNextModel into a stock five-stage one (new stage initialised)."""
        from torch import nn
        from transformers.models.convnext.modeling_convnext import ConvNextStage

        config = model.config
        width = config.hidden_sizes[-1]
        stage = ConvNextStage(config, in_channels=width, out_channels=2 * width, depth=depth)
        stage.apply(model._init_weights)
        model.encoder.stages.append(stage)
        # The pooler's norm follows the last width, as in a model built with five stages.
        model.layernorm = nn.LayerNorm(2 * width, eps=config.layer_norm_eps)
        config.depths = [*config.depths, depth]
        config.hidden_sizes = [*config.hidden_sizes, 2 * width]
        config.num_stages = len(config.depths)
        config.stage_names = [*config.stage_names, f"stage{config.num_stages}"]

    @classmethod
    def stage_count(cls, spec: EncoderSpec) -> int:
        """Four stages (the tiny twin: one per ``depths`` entry), plus the fifth if appended."""
        stages = (
            REAL_NUM_STAGES
            if spec.tiny is None
            else len(spec.tiny.get("depths", TINY_CONVNEXT["depths"]))
        )
        return stages + int(spec.fifth_stage)

    def stage_modules(self) -> Sequence[torch.nn.Module]:
        """``model.encoder.stages``: each ``ConvNextStage`` holds its downsampling layer and
        blocks, so unfreezing a stage is ConvLLaVA's ``make_layers_trainable_after_stage``."""
        return list(self.model.encoder.stages)

    def enable_gradient_checkpointing(self) -> None:
        """Recompute each ConvNeXt block in the backward pass (transformers' ConvNeXt has no
        switch for it): a 1536 px input keeps 96x96x3072 MLP activations per block of stage
        index 2, which ConvLLaVA's stage 2 trains."""
        for stage in self.stage_modules():
            for layer in stage.layers:
                if not getattr(layer, "_vislaw_checkpointed", False):
                    layer.forward = functools.partial(_checkpointed, layer.forward)
                    layer._vislaw_checkpointed = True

    @property
    def fifth_stage(self) -> torch.nn.Module | None:
        """The appended stage (what training unfreezes), or None without ``fifth_stage``."""
        return self.model.encoder.stages[-1] if self.spec.fifth_stage else None

    @property
    def channels(self) -> int:
        return int(self.model.config.hidden_sizes[-1])

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.model(pixel_values=pixels).last_hidden_state  # (B, C, H, W)
        return hidden.flatten(2).transpose(1, 2)

"""Any open_clip model's vision tower (LAION ConvNeXt-CLIP as Cambrian and ConvLLaVA use, open_clip
ViTs), through ``open_clip.create_model_from_pretrained``.

Real: ``model_id`` is a Hub id (``laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup``,
with or without open_clip's ``hf-hub:`` prefix) or a local folder, both in open_clip's own layout
(``open_clip_config.json`` with ``model_cfg`` and ``preprocess_cfg``, plus
``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``). open_clip loads the weights
strictly and refuses a repo without them; only the vision tower (``model.visual``) is kept.
Normalisation: the checkpoint's ``preprocess_cfg`` (mean/std), or ``options.mean``/``std``.

Feature: ``model.visual.forward_intermediates`` at index ``layer``, which open_clip maps to the
trunk's stages for a timm CNN (ConvNeXt: stage output, default -1, the map ConvLLaVA and Cambrian
take) and to the transformer blocks for an open_clip ViT (default -2, without the CLS token).

Grid: ``input_size / patch`` where the patch is the entry's ``patch_size``, else read from the
model config: an open_clip ViT's ``vision_cfg.patch_size``, a timm ConvNeXt trunk's stride at the
chosen stage (4, 8, 16, 32); another timm trunk needs ``patch_size`` in the entry.

Tiny twin: ``tiny: {model_name: <open_clip built-in config>, ...vision_cfg overrides,
embed_dim}``: the real vision-tower class open_clip builds from that config
(``TimmModel`` or ``VisionTransformer``) at small width, random init. The default is
``convnext_large_d_320`` with timm's smallest ConvNeXt trunk (``convnext_zepto_rms``).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import CLIP_MEAN, CLIP_STD, EncoderSpec, VisionEncoder, patch_grid
from vislaw.encoders.checks import cached_json, check_index

if TYPE_CHECKING:
    import torch

TINY_OPEN_CLIP: dict[str, Any] = {
    "model_name": "convnext_large_d_320",
    "timm_model_name": "convnext_zepto_rms",
    "embed_dim": 32,
}
# Small widths for an open_clip ViT twin (``tiny: {model_name: ViT-B-16}``).
TINY_VIT: dict[str, Any] = {"width": 32, "layers": 3, "head_width": 8}
CONVNEXT_STEM = 4  # a ConvNeXt's stem stride; each later stage halves the map
CONVNEXT_STAGES = 4
HUB_PREFIX = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"


def builtin_config(name: str) -> dict[str, Any] | None:
    """One of open_clip's built-in model configs (``model_configs/<name>.json``), read from the
    installed package without importing it (and torch): the config check runs before any job."""
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(next(iter(found.submodule_search_locations))) / "model_configs" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def hub_id(model_id: str) -> str:
    return model_id[len(HUB_PREFIX) :] if model_id.startswith(HUB_PREFIX) else model_id


def checkpoint_model_cfg(model_id: str) -> dict[str, Any] | None:
    """A real checkpoint's ``model_cfg`` from its ``open_clip_config.json`` (local folder or
    already in the HF cache, never downloaded), or None when it is not available offline."""
    data = cached_json(hub_id(model_id), CONFIG_FILE)
    if data is None:
        return None
    cfg = data.get("model_cfg", data)
    return cfg if isinstance(cfg, dict) else None


class OpenClipEncoder(VisionEncoder):
    family = "open_clip"
    conda_env = "open_clip"
    # The files open_clip reads from a Hub repo (its own layout, not transformers'): what a
    # download of the checkpoint needs.
    hub_files: ClassVar[tuple[str, ...] | None] = (
        CONFIG_FILE,
        "open_clip_model.safetensors",
        "open_clip_pytorch_model.bin",
    )
    mean = CLIP_MEAN  # open_clip's default preprocess (OpenAI's), when a config names none
    std = CLIP_STD

    # ---- static facts (no model needed) -------------------------------------------------------
    @classmethod
    def tiny_options(cls, spec: EncoderSpec) -> dict[str, Any]:
        overrides = dict(spec.tiny or {})
        if "model_name" in overrides and overrides["model_name"] != TINY_OPEN_CLIP["model_name"]:
            return overrides
        return {**TINY_OPEN_CLIP, **overrides}

    @classmethod
    def vision_cfg(cls, spec: EncoderSpec) -> dict[str, Any] | None:
        """The vision tower's open_clip config: the twin's (built-in config + overrides) or the
        checkpoint's (None when not available offline)."""
        if spec.tiny is None:
            cfg = checkpoint_model_cfg(str(spec.model_id))
            return None if cfg is None else dict(cfg.get("vision_cfg", {}))
        options = cls.tiny_options(spec)
        base = builtin_config(str(options["model_name"]))
        if base is None:
            raise ConfigError(
                f"encoders.{spec.name}.tiny.model_name",
                f"'{options['model_name']}' is not one of open_clip's built-in model configs "
                "(open_clip.list_models()), or open-clip-torch is not installed",
            )
        vision = {**base["vision_cfg"], "image_size": spec.input_size}
        if "timm_model_name" not in vision:
            vision.update(TINY_VIT)
        vision.update({k: v for k, v in options.items() if k not in ("model_name", "embed_dim")})
        return vision

    @classmethod
    def is_cnn(cls, vision: Mapping[str, Any]) -> bool:
        return bool(vision.get("timm_model_name"))

    @classmethod
    def layer_index(cls, spec: EncoderSpec, vision: Mapping[str, Any] | None) -> int:
        if spec.layer is not None:
            return spec.layer
        return -1 if vision is not None and cls.is_cnn(vision) else -2

    @classmethod
    def patch(cls, spec: EncoderSpec) -> int:
        if spec.patch_size:
            return spec.patch_size
        vision = cls.vision_cfg(spec)
        key = f"encoders.{spec.name}.patch_size"
        if vision is None:
            raise ConfigError(
                key,
                f"needed for family open_clip: {spec.model_id}'s {CONFIG_FILE} is not local or "
                "cached yet (run prepare, or set patch_size)",
            )
        if not cls.is_cnn(vision):
            return int(vision.get("patch_size", 16))
        trunk = str(vision["timm_model_name"])
        if not trunk.startswith("convnext"):
            raise ConfigError(
                key, f"needed for the timm trunk '{trunk}': its total stride at the chosen layer"
            )
        stage = cls.layer_index(spec, vision)
        if not -CONVNEXT_STAGES <= stage < CONVNEXT_STAGES:
            raise ConfigError(
                f"encoders.{spec.name}.layer",
                f"{stage} is out of range: a ConvNeXt has {CONVNEXT_STAGES} stages "
                f"(valid {-CONVNEXT_STAGES}..{CONVNEXT_STAGES - 1})",
            )
        return CONVNEXT_STEM * 2 ** (stage % CONVNEXT_STAGES)

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        return patch_grid(spec, cls.patch(spec))

    @classmethod
    def depth(cls, spec: EncoderSpec) -> int | None:
        """Blocks of an open_clip ViT tower (what ``layer`` indexes), when the config says."""
        vision = cls.vision_cfg(spec)
        if vision is None or cls.is_cnn(vision) or not isinstance(vision.get("layers"), int):
            return None
        return int(vision["layers"])

    @classmethod
    def check_spec(cls, spec: EncoderSpec) -> None:
        """A ViT's ``layer`` indexes its blocks (``forward_intermediates``), counted from the
        twin's or the checkpoint's open_clip config; a ConvNeXt's stages are checked by its
        stride arithmetic (:meth:`patch`)."""
        depth = cls.depth(spec)
        if spec.layer is not None and depth is not None:
            check_index(
                f"encoders.{spec.name}.layer", spec.layer, depth, "the vision tower's blocks"
            )

    # ---- building ----------------------------------------------------------------------------
    def __init__(self, spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None):
        super().__init__(spec, device, dtype)
        options = spec.options
        if "mean" in options and "std" in options:
            self.mean, self.std = tuple(options["mean"]), tuple(options["std"])
        else:
            preprocess = getattr(self.model, "preprocess_cfg", None) or {}
            self.mean = tuple(preprocess.get("mean", self.mean))
            self.std = tuple(preprocess.get("std", self.std))

    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        import open_clip

        source = str(model_id)
        name = f"local-dir:{source}" if Path(source).is_dir() else HUB_PREFIX + hub_id(source)
        vision = self.vision_cfg(self.spec) or {}
        # A ViT's position embeddings are resampled to the input size; a CNN takes any size.
        size = None if self.is_cnn(vision) else self.spec.input_size
        model = open_clip.create_model_from_pretrained(
            name, return_transform=False, force_image_size=size
        )
        return model.visual

    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        from open_clip.model import _build_vision_tower
        from open_clip.transform import PreprocessCfg

        embed_dim = int(self.tiny_options(self.spec).get("embed_dim", TINY_OPEN_CLIP["embed_dim"]))
        visual = _build_vision_tower(embed_dim, self.vision_cfg(self.spec))
        visual.preprocess_cfg = vars(PreprocessCfg())  # open_clip's defaults, as for a checkpoint
        return visual

    # ---- running -----------------------------------------------------------------------------
    @property
    def trunk_layer(self) -> int:
        vision = {"timm_model_name": "cnn"} if hasattr(self.model, "trunk") else {}
        return self.layer_index(self.spec, vision)

    @property
    def channels(self) -> int:
        if hasattr(self.model, "trunk"):  # a timm trunk: its feature_info per stage/block
            return int(self.model.trunk.feature_info[self.trunk_layer]["num_chs"])
        return int(self.model.transformer.width)

    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self.model.forward_intermediates(
            pixels, indices=[self.trunk_layer], intermediates_only=True, output_fmt="NCHW"
        )
        (grid,) = out["image_intermediates"]
        return grid.flatten(2).transpose(1, 2)

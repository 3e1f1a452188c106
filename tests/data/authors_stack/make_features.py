"""Writes ``features.npz``: the MLLM and C-score features that the *authors' own code* computes on
tiny twins, for ``tests/unit/encoders/test_authors_features.py`` to compare vislaw's
``protocol: paper`` with.

Two steps, two stacks. Step 1 runs in this project's environment and saves the tiny random-init
twins (vislaw's tiny configs; DiT and SD3 as ``tests/helpers/hub_twins.py`` writes them, the
UNets at the real depth with half ``REAL_DEPTH_UNET``'s channels) under ``twins/`` in each real
repo's layout, with what 4.38 and their pipelines need to read them: ``vision_model.``/
``text_model.`` key prefixes (transformers 5 saves towers without them), the slow tokenizer's
vocab/merges, a full ``model_index.json``, the real repos' ``preprocessor_config.json``, DINOv2
as ``pytorch_model.bin`` (their tower passes ``use_safetensors=False``), and every tensor in
float16 (both stacks load them as float32: the same values, half the bytes). Both stacks then
load the SAME files. Step 2 runs the authors' code (commit
2e03055eb8d3ed8065190c178c9cb0f294621f29, "add ac policy") in their pinned stack,
transformers 4.38.2 and the diffusers 0.30.0.dev0 vendored in their repository, in front of
this project's torch::

    # step 1, this project's venv
    PYTHONPATH=$PWD python tests/data/authors_stack/make_features.py twins
    # the authors' stack: transformers 4.38.2 in a folder of its own, their code from git
    pip install --target /tmp/tf438site transformers==4.38.2 'tokenizers<0.19'
    git clone https://github.com/bronyayang/Law_of_Vision_Representation_in_MLLMs /tmp/lvr
    git -C /tmp/lvr checkout 2e03055eb8d3ed8065190c178c9cb0f294621f29
    # step 2 (their vendored diffusers first on the path)
    PYTHONPATH=/tmp/lvr/diffusers/src:/tmp/tf438site:/tmp/lvr HF_HUB_OFFLINE=1 \
        python tests/data/authors_stack/make_features.py features

What step 2 runs is their code: the towers of ``llava/model/multimodal_encoder`` (CLIP, SigLIP,
DINOv2, and ``DiffVisionTower`` over the ``diffLVLM`` featurizers: SD/SDXL, SD image variations,
DiT, SD3), their processors (``image_processor`` of each tower; LLaVA's ``image_aspect_ratio``
"square" hands the image straight to it; for DINOv2 at 336 their two commented-out lines that
set ``size``/``crop_size``), ``encode_images``' fusion (``torch.cat`` of the towers' outputs in
``mm_vision_tower`` order), and ``C_score/extract_feature.py``'s ``extract_features`` (executed
from its source). What is changed, and why:

- CPU and float32: every ``cuda`` device becomes ``cpu`` and every bf16/fp16 dtype float32
  (``.to``/``.cuda``/``.bfloat16``/``torch_dtype`` are wrapped), since no float32 run can equal
  bf16 (8 mantissa bits). The ``*_bf16`` keys below keep their bf16.
- ``extract_features`` hard-codes the real models' widths and grids (``.view(1, 1024, 16, 16)``)
  and image sizes; those constants become the twin's (``-1``, the grid, the twin's size).
- Their featurizer tables are keyed by hub id: the twin's folder is added under its real id's
  featurizer. peft is hidden from their diffusers (this venv's peft needs transformers 5; their
  code never uses it).
- Two random draws: their featurizers *sample* the VAE posterior and draw a fresh noise map per
  call (``torch.randn_like``). Keys ``*_mllm``/``*_c`` are computed with those two draws fixed to
  vislaw's (the posterior mean; one seeded (1, C, h, w) map, ``SEED`` below): everything else is
  their code. Keys ``*_random`` keep their draws (``torch.manual_seed(0)``): how far apart the two
  can be at most, with no control over their RNG. Keys ``*_bf16`` (diffusion towers, MLLM)
  keep their bf16 (on CPU), with the draws fixed: what their precision alone changes.

Inputs: ``photo.png`` (made in step 1, 96x64, smooth) for every case.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TWINS = HERE / "twins"
AUTHORS_COMMIT = "2e03055"
SEED = 3  # the twins' seed and the fixed noise map's seed (vislaw's spec.seed)

# Folder under twins/ -> (family, tiny overrides, the size the twin is built at).
TWIN_SPECS: dict[str, tuple[str, dict[str, Any], int]] = {
    "clip-vit-large-patch14-336": ("clip", {"patch_size": 14, "num_hidden_layers": 2}, 336),
    "siglip-base-patch16-224": ("siglip", {"patch_size": 16, "num_hidden_layers": 2}, 224),
    # The real DINOv2 position grid: 518 px / 14 = 37x37, interpolated at every other size.
    "dinov2-large": ("dinov2", {"patch_size": 14, "num_hidden_layers": 2}, 518),
    "stable-diffusion-2-1": ("sd_unet", {}, 128),
    "stable-diffusion-xl-base-1.0": ("sd_unet", {"variant": "sdxl"}, 128),
    "sd-image-variations-diffusers": ("sd_image_variations", {}, 128),
    "DiT-XL-2-512": ("dit", {}, 128),
    "stable-diffusion-3-medium-diffusers": ("sd3", {}, 128),
}

# Case -> (twin folder, input size, extra). Every case has an MLLM and a C-score key.
CASES: dict[str, tuple[str, int, dict[str, Any]]] = {
    "clip_336": ("clip-vit-large-patch14-336", 336, {}),
    "siglip_224": ("siglip-base-patch16-224", 224, {}),
    "dinov2_224": ("dinov2-large", 224, {}),
    "dinov2_336": ("dinov2-large", 336, {}),
    "sd_unet_128": ("stable-diffusion-2-1", 128, {"up_block": 0}),
    # Their C-score script always reads up block 0 (SDFeaturizer.forward's default): MLLM only.
    "sd_unet_128_up1": ("stable-diffusion-2-1", 128, {"up_block": 1, "c_score": False}),
    "sdxl_128": ("stable-diffusion-xl-base-1.0", 128, {"up_block": 0}),
    "sd_image_variations_128": ("sd-image-variations-diffusers", 128, {"up_block": 0}),
    "dit_128": ("DiT-XL-2-512", 128, {"block": -1}),
    "sd3_128": ("stable-diffusion-3-medium-diffusers", 128, {"block": -1}),
}
# Fusion cases: the members' cases, concatenated in this order.
FUSIONS: dict[str, tuple[str, ...]] = {"clip_336+dinov2_336": ("clip_336", "dinov2_336")}

_T, _D, _NONE = "transformers", "diffusers", [None, None]
_SD_PARTS = {"vae": [_D, "AutoencoderKL"], "unet": [_D, "UNet2DConditionModel"],
             "scheduler": [_D, "DDPMScheduler"]}  # fmt: skip
# The real repos' model_index.json components (the ones the twin has).
MODEL_INDEX: dict[str, tuple[str, dict[str, Any]]] = {
    "stable-diffusion-2-1": ("StableDiffusionPipeline", {
        **_SD_PARTS, "text_encoder": [_T, "CLIPTextModel"], "tokenizer": [_T, "CLIPTokenizer"],
        "safety_checker": _NONE, "feature_extractor": _NONE, "requires_safety_checker": False}),
    "stable-diffusion-xl-base-1.0": ("StableDiffusionXLPipeline", {
        **_SD_PARTS, "text_encoder": [_T, "CLIPTextModel"], "tokenizer": [_T, "CLIPTokenizer"],
        "text_encoder_2": [_T, "CLIPTextModelWithProjection"],
        "tokenizer_2": [_T, "CLIPTokenizer"], "force_zeros_for_empty_prompt": True}),
    "sd-image-variations-diffusers": ("StableDiffusionImageVariationPipeline", {
        **_SD_PARTS, "image_encoder": [_T, "CLIPVisionModelWithProjection"],
        "safety_checker": _NONE, "feature_extractor": [_T, "CLIPImageProcessor"], "requires_safety_checker": False}),
    "DiT-XL-2-512": ("DiTPipeline", {
        "vae": [_D, "AutoencoderKL"], "transformer": [_D, "DiTTransformer2DModel"],
        "scheduler": [_D, "DDPMScheduler"]}),
    "stable-diffusion-3-medium-diffusers": ("StableDiffusion3Pipeline", {
        "vae": [_D, "AutoencoderKL"], "transformer": [_D, "SD3Transformer2DModel"],
        "scheduler": [_D, "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": [_T, "CLIPTextModelWithProjection"], "tokenizer": [_T, "CLIPTokenizer"],
        "text_encoder_2": [_T, "CLIPTextModelWithProjection"],
        "tokenizer_2": [_T, "CLIPTokenizer"], "text_encoder_3": _NONE, "tokenizer_3": _NONE}),
}  # fmt: skip

# The real repos' processor configs (preprocessor_config.json), at the twin's size.
PROCESSORS: dict[str, dict[str, Any]] = {
    "clip": {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 336},
        "do_center_crop": True, "crop_size": {"height": 336, "width": 336},
        "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_convert_rgb": True, "resample": 3,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    },
    "siglip": {
        "image_processor_type": "SiglipImageProcessor",
        "do_resize": True, "size": {"height": 224, "width": 224},
        "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255, "resample": 3,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    },
    "dinov2": {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True, "size": {"shortest_edge": 256},
        "do_center_crop": True, "crop_size": {"height": 224, "width": 224},
        "do_normalize": True, "do_rescale": True, "rescale_factor": 1 / 255,
        "do_convert_rgb": True, "resample": 3,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
    },
}  # fmt: skip


# ---- step 1: twins (this project's stack) ---------------------------------------------------------
def write_twins() -> None:
    """Save every twin of TWIN_SPECS and the photo (vislaw's tiny configs, real repo layouts)."""
    import numpy as np
    import torch
    from PIL import Image

    sys.path.insert(0, str(HERE.parent.parent))  # tests/, for helpers
    from helpers.hub_twins import write_twin
    from vislaw.encoders.base import EncoderSpec

    for folder, (family, tiny, size) in TWIN_SPECS.items():
        spec = EncoderSpec(
            name=folder, family=family, input_size=size, tiny=tiny, seed=SEED, model_id=folder
        )
        target = TWINS / folder
        target.mkdir(parents=True, exist_ok=True)
        write_twin_with_overrides(write_twin, target, spec)
        if family in PROCESSORS:
            (target / "preprocessor_config.json").write_text(
                json.dumps(PROCESSORS[family], indent=1) + "\n"
            )
        if folder in MODEL_INDEX:  # their pipelines' from_pretrained reads the components here
            index = {"_class_name": MODEL_INDEX[folder][0], **MODEL_INDEX[folder][1]}
            (target / "model_index.json").write_text(json.dumps(index, indent=1) + "\n")
        if family == "dinov2":  # their tower loads it with use_safetensors=False
            from safetensors.torch import load_file

            weights = target / "model.safetensors"
            torch.save(load_file(weights), target / "pytorch_model.bin")
            weights.unlink()
    for path in TWINS.glob("*/text_encoder*/model.safetensors"):
        _prefixed(path, "text_model.")
    for path in TWINS.glob("*/image_encoder/model.safetensors"):
        _prefixed(path, "vision_model.")
    to_half(TWINS)
    for src in TWINS.glob("*/tokenizer*/src"):  # the slow tokenizer's files, which 4.38 reads
        for name in ("vocab.json", "merges.txt"):
            (src / name).rename(src.parent / name)
        src.rmdir()
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    photo = Image.fromarray(coarse).resize((96, 64), Image.Resampling.BILINEAR)
    photo.save(HERE / "photo.png")


# The real UNets' depth (three / two downsamplings, as tests/helpers/hub_twins.py's REAL_DEPTH_UNET),
# at half its channels to keep the committed files small.
SMALL_UNET = {
    "sd": {
        "block_out_channels": [8, 8, 16, 16],
        "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
        "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
    },
    "sdxl": {
        "block_out_channels": [8, 16, 16],
        "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * 2,
        "up_block_types": ["CrossAttnUpBlock2D"] * 2 + ["UpBlock2D"],
    },
}


def write_twin_with_overrides(write_twin: Any, target: Path, spec: Any) -> None:
    """Save one twin: the ViTs with this spec's tiny overrides, the UNet families at the real
    depth (SMALL_UNET), DiT and SD3 as hub_twins writes them."""
    import dataclasses

    from helpers.hub_twins import sd_layout
    from vislaw.encoders.registry import build_encoder

    if spec.family in ("clip", "siglip", "dinov2"):
        build_encoder(spec).model.save_pretrained(target)
        if spec.family != "dinov2":  # the real repos' key names, which 4.38 needs
            _prefixed(target / "model.safetensors", "vision_model.")
        return
    if spec.family not in ("sd_unet", "sd_image_variations"):
        write_twin(target, spec)
        return
    variant = spec.tiny.get("variant", "sd")
    tiny = {**spec.tiny, "unet": SMALL_UNET[variant]}
    twin = build_encoder(dataclasses.replace(spec, tiny=tiny, model_id=None))
    if spec.family == "sd_unet":
        sd_layout(twin, target, variant)
        return
    for part in ("vae", "unet", "image_encoder"):
        twin.model[part].save_pretrained(target / part)
    twin.scheduler.save_pretrained(target / "scheduler")
    # The pipeline needs one; their featurizer hands it tensors, which it does not touch.
    (target / "feature_extractor").mkdir(exist_ok=True)
    clip = {**PROCESSORS["clip"], "size": {"shortest_edge": 224}}
    clip["crop_size"] = {"height": 224, "width": 224}
    (target / "feature_extractor" / "preprocessor_config.json").write_text(json.dumps(clip))


def _prefixed(path: Path, prefix: str) -> None:
    """Write the tensors of ``path`` under ``prefix`` (transformers 5 saves a CLIP/SigLIP tower's
    tensors without the ``vision_model.``/``text_model.`` that the published checkpoints, and
    4.38, have; their projections stay top-level)."""
    from safetensors.torch import load_file, save_file

    state = load_file(path)
    top = ("text_projection", "visual_projection", prefix)
    named = {k if k.startswith(top) else prefix + k: v for k, v in state.items()}
    save_file(named, path, {"format": "pt"})


def to_half(folder: Path) -> None:
    """Store every weight file in float16 (half the bytes); both stacks load them as float32,
    so both see the same float16-representable values."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in folder.rglob("*.safetensors"):
        save_file({k: v.half() for k, v in load_file(path).items()}, path, {"format": "pt"})
    for path in folder.rglob("*.bin"):
        state = torch.load(path, weights_only=True)
        torch.save({k: v.half() for k, v in state.items()}, path)


# ---- step 2: the authors' code (their stack) ------------------------------------------------------
# Whether their bf16/fp16 dtypes are kept (the ``*_bf16`` keys) or made float32 (the rest).
KEEP_LOW_PRECISION = {"on": False}


def _cpu_float32() -> None:
    """Run their CUDA/bf16 code on CPU in float32 (module docstring): wrap the calls that move."""
    import torch

    real_to, real_module_to = torch.Tensor.to, torch.nn.Module.to
    low = (torch.bfloat16, torch.float16)

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("cuda"):
            return "cpu"
        if isinstance(value, torch.device) and value.type == "cuda":
            return torch.device("cpu")
        keep = KEEP_LOW_PRECISION["on"]
        return torch.float32 if value in low and not keep else value

    def fixed(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return tuple(fix(a) for a in args), {k: fix(v) for k, v in kwargs.items()}

    def tensor_to(self, *args, **kwargs):
        args, kwargs = fixed(args, kwargs)
        return real_to(self, *args, **kwargs)

    def module_to(self, *args, **kwargs):
        args, kwargs = fixed(args, kwargs)
        return real_module_to(self, *args, **kwargs)

    torch.Tensor.to = tensor_to
    torch.nn.Module.to = module_to
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    real_bf16 = torch.Tensor.bfloat16
    torch.Tensor.bfloat16 = lambda self, *a, **k: (
        real_bf16(self) if KEEP_LOW_PRECISION["on"] else self.float()
    )

    from diffusers import DiffusionPipeline
    from diffusers.models.modeling_utils import ModelMixin

    pipe_to = DiffusionPipeline.to
    DiffusionPipeline.to = lambda self, *a, **k: pipe_to(self, *fixed(a, k)[0], **fixed(a, k)[1])
    for owner in (DiffusionPipeline, ModelMixin):
        _float32_loading(owner)
    for name in ("encode_prompt", "_encode_image"):
        for pipeline in _pipelines():
            _cpu_method(pipeline, name, fix)


def _float32_loading(owner: Any) -> None:
    """``owner.from_pretrained`` with any ``torch_dtype`` loaded as float32."""
    import torch

    real = owner.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        if kwargs.get("torch_dtype") is not None and not KEEP_LOW_PRECISION["on"]:
            kwargs["torch_dtype"] = torch.float32
        return real(cls, *args, **kwargs)

    owner.from_pretrained = classmethod(from_pretrained)


def _pipelines() -> list[Any]:
    from diffusers import (
        StableDiffusion3Pipeline,
        StableDiffusionImageVariationPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    return [
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        StableDiffusionImageVariationPipeline,
        StableDiffusion3Pipeline,
    ]


def _cpu_method(owner: Any, name: str, fix: Any) -> None:
    real = getattr(owner, name, None)
    if real is None or getattr(real, "_cpu", False):
        return

    def method(self, *args, **kwargs):
        return real(self, *[fix(a) for a in args], **{k: fix(v) for k, v in kwargs.items()})

    method._cpu = True
    setattr(owner, name, method)


class _Draws:
    """Their two random draws, fixed to vislaw's (posterior mean; one seeded noise map) or not."""

    def __init__(self) -> None:
        import torch
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        self.fixed = True
        self.real_sample = DiagonalGaussianDistribution.sample
        self.real_randn_like = torch.randn_like
        draws = self

        def sample(dist, generator=None):
            return dist.mean if draws.fixed else draws.real_sample(dist, generator)

        def randn_like(x, *args, **kwargs):
            if not draws.fixed:
                return draws.real_randn_like(x, *args, **kwargs)
            gen = torch.Generator().manual_seed(SEED)
            noise = torch.randn((1, *x.shape[1:]), generator=gen)
            return noise.to(x.dtype).expand_as(x).clone()

        DiagonalGaussianDistribution.sample = sample
        torch.randn_like = randn_like


def _extract_features_source() -> str:
    """``C_score/extract_feature.py``'s ``extract_features`` with the real widths, grids and
    image sizes replaced by the twin's (IMG_SIZE, GRID): its source, executed here."""
    import llava

    script = Path(list(llava.__path__)[0]).resolve().parent / "C_score" / "extract_feature.py"
    tree = ast.parse(script.read_text())
    (func,) = [
        n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "extract_features"
    ]
    source = ast.get_source_segment(script.read_text(), func)
    source = re.sub(r"img_size = \d+", "img_size = IMG_SIZE", source)
    source = re.sub(r"\.view\(1, \d+, \d+, \d+\)", ".view(1, -1, GRID, GRID)", source)
    return source


FEATURE_NAMES = {  # twin folder -> extract_features' `feature`
    "clip-vit-large-patch14-336": "CLIP",
    "siglip-base-patch16-224": "SigLIP",
    "dinov2-large": "DINOv2",
    "stable-diffusion-2-1": "DIFT2.1",
    "stable-diffusion-xl-base-1.0": "DIFTXL",
    "sd-image-variations-diffusers": "IMDIFT",
    "DiT-XL-2-512": "DiTDIFT",
    "stable-diffusion-3-medium-diffusers": "SD3DIFT",
}


class _Args:
    """The LLaVA model args their towers read."""

    def __init__(self, **kwargs: Any) -> None:
        self.mm_vision_select_layer = -2
        self.__dict__.update(kwargs)


def _vit_tower(folder: str, size: int) -> Any:
    from llava.model.multimodal_encoder.clip_encoder import CLIPVisionTower
    from llava.model.multimodal_encoder.dinov2_encoder import DinoV2VisionTower
    from llava.model.multimodal_encoder.siglip_encoder import SigLipVisionTower

    path = str(TWINS / folder)
    family = TWIN_SPECS[folder][0]
    tower_class = {
        "clip": CLIPVisionTower,
        "siglip": SigLipVisionTower,
        "dinov2": DinoV2VisionTower,
    }
    tower = tower_class[family](path, args=_Args())
    if family == "dinov2" and size != 224:  # their commented-out lines, at this size
        tower.image_processor.crop_size = {"width": size, "height": size}
        tower.image_processor.size = {"width": size, "height": size}
    return tower


def _diff_tower(folder: str, size: int, extra: dict[str, Any]) -> Any:
    from llava.model.multimodal_encoder.diffLVLM import diffusion_encoder as de

    path = str(TWINS / folder)
    featurizer = de.build_featurelizer_mapping[f"{_REAL_IDS[folder]}"]
    de.build_featurelizer_mapping[path] = featurizer  # their tables are keyed by the hub id
    de.feature_hid_size_mapping[path] = 0
    index = extra.get("up_block", extra.get("block"))
    args = _Args(up_ft_index=index, t=1, prompt="", vision_tower=path, ensemble_size=1,
                 img_size=size)  # fmt: skip
    return de.DiffVisionTower(args)


_REAL_IDS = {
    "stable-diffusion-2-1": "stabilityai/stable-diffusion-2-1",
    "stable-diffusion-xl-base-1.0": "stabilityai/stable-diffusion-xl-base-1.0",
    "sd-image-variations-diffusers": "lambdalabs/sd-image-variations-diffusers",
    "DiT-XL-2-512": "facebook/DiT-XL-2-512",
    "stable-diffusion-3-medium-diffusers": "stabilityai/stable-diffusion-3-medium-diffusers",
}


def _tokens(maps: Any) -> Any:
    """(1, C, h, w) maps -> (1, h*w, C) row-major tokens, vislaw's feature layout."""
    return maps.flatten(2).transpose(1, 2)


def _case(name: str, draws: _Draws, photo: Path, out: dict[str, Any]) -> None:
    import torch
    from PIL import Image
    from torchvision.transforms import PILToTensor

    folder, size, extra = CASES[name]
    diffusion = folder in _REAL_IDS
    tower = _diff_tower(folder, size, extra) if diffusion else _vit_tower(folder, size)
    image = Image.open(photo).convert("RGB")
    with torch.no_grad():
        pixels = tower.image_processor.preprocess(image, return_tensors="pt")["pixel_values"]
        pixels = torch.stack(list(pixels)) if isinstance(pixels, list) else pixels
        out[f"{name}_mllm"] = tower(pixels).float().numpy()
        # extract_features' globals; GRID: the side of the (square) token grid.
        glob = {"torch": torch, "Image": Image, "PILToTensor": PILToTensor, "IMG_SIZE": size,
                "GRID": round(out[f"{name}_mllm"].shape[1] ** 0.5),
                "feature": FEATURE_NAMES[folder], "dift": tower.vision_tower if diffusion else tower}  # fmt: skip
        exec(_extract_features_source(), glob)  # noqa: S102 - their function, their source
        if not extra.get("c_score", True):
            glob["extract_features"] = None
        else:
            out[f"{name}_c"] = _tokens(glob["extract_features"](str(photo))).float().numpy()
        if diffusion:
            draws.fixed = False
            torch.manual_seed(0)
            out[f"{name}_mllm_random"] = tower(pixels).float().numpy()
            torch.manual_seed(0)
            if glob["extract_features"]:
                out[f"{name}_c_random"] = (
                    _tokens(glob["extract_features"](str(photo))).float().numpy()
                )
            draws.fixed = True
            # Their precision: bf16 weights and activations (on CPU here), the draws fixed.
            KEEP_LOW_PRECISION["on"] = True
            low = _diff_tower(folder, size, extra)
            out[f"{name}_mllm_bf16"] = low(pixels.bfloat16()).float().numpy()
            KEEP_LOW_PRECISION["on"] = False


def write_features(target: Path = HERE / "features.npz") -> None:
    """Run the authors' code on every case (step 2) and write the arrays to ``target``."""
    import numpy as np
    import transformers

    assert transformers.__version__ == "4.38.2", transformers.__version__
    import importlib.util

    find_spec = importlib.util.find_spec
    # This venv's peft needs transformers 5; their stack never used it: diffusers must not see it.
    importlib.util.find_spec = lambda name, *a: None if name == "peft" else find_spec(name, *a)
    import diffusers

    importlib.util.find_spec = find_spec
    assert diffusers.__version__ == "0.30.0.dev0", diffusers.__version__
    _cpu_float32()
    draws = _Draws()
    out: dict[str, Any] = {}
    for name in CASES:
        _case(name, draws, HERE / "photo.png", out)
        print(name, {k: v.shape for k, v in out.items() if k.startswith(name + "_")})
    for name, members in FUSIONS.items():  # encode_images: torch.cat(f_list, dim=-1)
        out[f"{name}_mllm"] = np.concatenate([out[f"{m}_mllm"] for m in members], -1)
        out[f"{name}_c"] = np.concatenate([out[f"{m}_c"] for m in members], -1)
    np.savez_compressed(target, **{k: v.astype("float32") for k, v in out.items()})


if __name__ == "__main__":
    if sys.argv[1] == "twins":
        write_twins()
    else:  # features [target]
        write_features(*[Path(a) for a in sys.argv[2:3]])

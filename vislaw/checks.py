"""Semantic config checks: what the schema cannot see but the config and the models' own config
files can tell before the first job (docs/refuses.md).

Each of these used to pass the dry run and then fail inside a job (an IndexError with no key
named, an h5py error on a 0x0 grid) or silently misbehave (pixels dropped when the input size is
not a multiple of the patch). Every check names the config key at fault.

The model facts come from the tiny twins' defaults (always known) or, for real checkpoints, from
their ``config.json`` when it is a local folder or already in the Hugging Face cache. A fact that
is not available offline is not guessed: that check is skipped and the job's own check applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.loading import model_type_problem
from vislaw.encoders.registry import family_class
from vislaw.eval.tasks import resolve_benchmarks

VIT_FAMILIES = frozenset({"clip", "siglip", "dinov2"})
DIFFUSION_FAMILIES = frozenset({"sd_unet", "sd_image_variations", "dit", "sd3"})
# DDPM-style training schedules of every diffusion family here (SD 1.x/2.x/XL, DiT, SD3's
# sigma = t / 1000): the fallback when a real checkpoint's scheduler config is not cached.
DEFAULT_TRAIN_TIMESTEPS = 1000


# ---- model config files, offline only ----------------------------------------------------------
def cached_json(model_id: str | None, filename: str) -> dict[str, Any] | None:
    """``filename`` of a local model folder or of a hub id already in the HF cache, else None
    (never downloads: these checks run in the Snakefile, possibly without network)."""
    if not model_id:
        return None
    local = Path(model_id) / filename
    if local.is_file():
        return _read_json(local)
    if Path(model_id).is_dir() or model_id.count("/") > 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None
    try:
        path = try_to_load_from_cache(model_id, filename)
    except Exception:  # noqa: BLE001 - an id the hub would reject: the job reports it
        return None
    return _read_json(Path(path)) if isinstance(path, str) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ---- encoders ----------------------------------------------------------------------------------
def checkpoint_config(spec: EncoderSpec) -> dict[str, Any] | None:
    """A real checkpoint's config.json when local or cached (None for twins and unknowns)."""
    if spec.tiny is not None:
        return None
    return cached_json(spec.model_id, "config.json")


def vision_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The vision tower's part of a config (CLIP/SigLIP full-model configs nest it)."""
    nested = config.get("vision_config")
    return nested if isinstance(nested, Mapping) else config


def vit_depth(spec: EncoderSpec) -> int | None:
    """Transformer layers of a ViT encoder (tiny defaults + overrides, or the cached config)."""
    if spec.tiny is not None:
        defaults = getattr(family_class(spec.family), "tiny_defaults", {})
        depth = {**defaults, **dict(spec.tiny)}.get("num_hidden_layers")
        return int(depth) if depth is not None else None
    config = checkpoint_config(spec)
    if config is None:
        return None
    depth = vision_config(config).get("num_hidden_layers")
    return int(depth) if isinstance(depth, int) else None


def check_index(key: str, index: int, count: int, what: str) -> None:
    """``index`` must address one of ``count`` items, Python style (negative from the end)."""
    if not -count <= index < count:
        raise ConfigError(
            key, f"{index} is out of range: {what} has {count} (valid {-count}..{count - 1})"
        )


def check_checkpoint_facts(spec: EncoderSpec, facts: Mapping[str, tuple[str, int]]) -> None:
    """A real checkpoint's config.json (local or cached) must be of a model_type the family
    loads and agree with the entry's grid facts: ``facts`` maps a config.json key to (the entry
    key, the value the grid arithmetic uses). A key the file does not write is not guessed."""
    config = checkpoint_config(spec)
    if config is None:
        return
    key = f"encoders.{spec.name}"
    model_type = config.get("model_type")
    problem = model_type_problem(spec.family, model_type, str(spec.model_id))
    if problem:
        raise ConfigError(f"{key}.family", problem)
    tower = vision_config(config)
    for name, (entry_key, used) in facts.items():
        found = tower.get(name)
        if isinstance(found, int) and found != used:
            raise ConfigError(
                f"{key}.{entry_key}",
                f"{used} disagrees with {spec.model_id}'s config.json {name}: {found}",
            )


def check_vit(spec: EncoderSpec) -> None:
    patch = family_class(spec.family).patch(spec)
    key = f"encoders.{spec.name}"
    # The checkpoint's image_size is read by the job, not here: every ViT family interpolates
    # its position embeddings, so an input_size other than the checkpoint's is legitimate.
    check_checkpoint_facts(spec, {"patch_size": ("patch_size", patch)})
    if spec.input_size < patch:
        raise ConfigError(f"{key}.input_size", f"{spec.input_size} is below the patch size {patch}")
    if spec.input_size % patch:
        raise ConfigError(
            f"{key}.input_size",
            f"{spec.input_size} is not a multiple of the patch size {patch} "
            f"(the last {spec.input_size % patch} pixel rows/columns would be dropped)",
        )
    if spec.layer is not None:
        depth = vit_depth(spec)
        if depth is not None:
            check_index(
                f"{key}.layer", spec.layer, depth + 1, "hidden_states (embeddings + layers)"
            )


def check_convnext(spec: EncoderSpec) -> None:
    from vislaw.encoders.convnext import REAL_NUM_STAGES, REAL_STEM_PATCH

    stride = family_class(spec.family).stride(spec)
    # The stride arithmetic assumes the stem patch and four stages (the fifth is appended).
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
        raise ConfigError(key, f"{spec.input_size} is not a multiple of the total stride {stride}")


def check_open_clip(spec: EncoderSpec) -> None:
    """An open_clip ViT's ``layer`` indexes its blocks (``forward_intermediates``), counted from
    the twin's or the checkpoint's open_clip config; a ConvNeXt's stages are checked by its
    stride arithmetic (the family's ``patch``)."""
    from vislaw.encoders.open_clip_models import OpenClipEncoder

    depth = OpenClipEncoder.depth(spec)
    if spec.layer is not None and depth is not None:
        check_index(f"encoders.{spec.name}.layer", spec.layer, depth, "the vision tower's blocks")


def train_timesteps(spec: EncoderSpec) -> int:
    if spec.tiny is None:
        scheduler = cached_json(spec.model_id, "scheduler/scheduler_config.json") or {}
        steps = scheduler.get("num_train_timesteps")
        if isinstance(steps, int) and steps > 0:
            return steps
    return DEFAULT_TRAIN_TIMESTEPS


def check_diffusion(spec: EncoderSpec) -> None:
    if spec.timestep is not None:
        steps = train_timesteps(spec)
        if not 0 <= spec.timestep < steps:
            raise ConfigError(
                f"encoders.{spec.name}.timestep",
                f"{spec.timestep} is out of range: the model was trained on timesteps 0..{steps - 1}",
            )


def check_encoder(spec: EncoderSpec) -> None:
    """Grid, layer and timestep of one encoder, from arithmetic and its model config."""
    if spec.family in VIT_FAMILIES:
        check_vit(spec)
    elif spec.family == "convnext":
        check_convnext(spec)
    elif spec.family in DIFFUSION_FAMILIES:
        check_diffusion(spec)
    elif spec.family == "open_clip":
        check_open_clip(spec)
    if spec.family != "fusion":
        rows, cols = family_class(spec.family).token_grid(spec)
        if rows < 1 or cols < 1:
            raise ConfigError(
                f"encoders.{spec.name}.input_size",
                f"{spec.input_size} gives a {rows}x{cols} token grid (no features)",
            )


# ---- training ----------------------------------------------------------------------------------
def training_processes(config: Mapping[str, Any], rule: str) -> int:
    """Processes a training rule launches: its resources' gpus (one per GPU), else 1."""
    resources = config["resources"]  # rule name -> resources; "default" applies to all
    merged = {**resources.get("default", {}), **resources.get(rule, {})}
    return max(int(merged.get("gpus") or 0), 1)


def check_training(config: Mapping[str, Any], encoders: list[str]) -> None:
    """Batch arithmetic of every phase each encoder trains: per_device_batch fits in
    global_batch, and global_batch = per_device_batch x processes x accumulation."""
    from vislaw.train.recipes import phase_settings, stage_phases

    seen: set[str] = set()  # a phase's settings depend on the config only, not the encoder
    for stage in (1, 2):
        world = training_processes(config, f"stage{stage}")
        for name in encoders:
            for phase in stage_phases(config, stage, name):
                if phase.label in seen:
                    continue
                seen.add(phase.label)
                settings = phase_settings(config, phase)
                if settings.per_device_batch > settings.global_batch:
                    raise ConfigError(
                        settings.key("per_device_batch"),
                        f"{settings.per_device_batch} is larger than global_batch "
                        f"({settings.global_batch})",
                    )
                settings.accumulation(world)  # names global_batch when it does not divide


# ---- LMVR --------------------------------------------------------------------------------------
def llm_depth(config: Mapping[str, Any]) -> int | None:
    """Decoder layers of the configured LLM (tiny defaults + overrides, or its cached config)."""
    llm = config["llm"]  # tiny and model_id are optional (no schema default)
    tiny = llm.get("tiny")
    if tiny:
        from vislaw.vlm.random_llm import TINY_LLAMA

        overrides = tiny if isinstance(tiny, Mapping) else {}
        return int({**TINY_LLAMA, **overrides}["num_hidden_layers"])
    model = cached_json(llm.get("model_id"), "config.json")
    if model is None:
        return None
    model = model.get("text_config", model)
    depth = model.get("num_hidden_layers")
    return int(depth) if isinstance(depth, int) else None


def check_lmvr(config: Mapping[str, Any]) -> None:
    """lmvr.layers and lmvr.maps.layer index the LLM's hidden states (embeddings + layers)."""
    from vislaw.lmvr.settings import LmvrSettings

    depth = llm_depth(config)
    if depth is None:
        return
    lmvr = LmvrSettings.from_config(config)
    for i, layer in enumerate(lmvr.layers):
        check_index(f"lmvr.layers.{i}", layer, depth + 1, "the LLM's hidden_states")
    check_index("lmvr.maps.layer", lmvr.maps.layer, depth + 1, "the LLM's hidden_states")


def check_semantics(config: Mapping[str, Any], specs: Mapping[str, EncoderSpec]) -> None:
    """Everything above, for a schema-checked config and its resolved encoder specs."""
    for spec in specs.values():
        check_encoder(spec)
    check_training(config, list(specs))
    check_lmvr(config)
    # every benchmark names a paper benchmark or an installed lmms-eval task and metric: a typo
    # is refused now, naming the key, not by the evaluate job after training
    resolve_benchmarks(config)

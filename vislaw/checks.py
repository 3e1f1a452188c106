"""Semantic config checks: what the schema cannot see but the config and the models' own config
files can tell before the first job (docs/refuses.md).

Each of these used to pass the dry run and then fail inside a job (an IndexError with no key
named, an h5py error on a 0x0 grid) or silently misbehave (pixels dropped when the input size is
not a multiple of the patch). Every check names the config key at fault.

The model facts come from the tiny twins' defaults (always known) or, for real checkpoints, from
their ``config.json`` when it is a local folder or already in the Hugging Face cache. A fact that
is not available offline is not guessed: that check is skipped and the job's own check applies.
Each family checks its own entries (``VisionEncoder.check_spec``, helpers in
``vislaw.encoders.checks``); this module holds the config-level checks and calls them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.checks import cached_json, check_index
from vislaw.encoders.registry import family_class
from vislaw.eval.tasks import resolve_benchmarks


# ---- encoders ----------------------------------------------------------------------------------
def check_encoder(spec: EncoderSpec) -> None:
    """Grid, layer and timestep of one encoder: its family's own checks
    (``VisionEncoder.check_spec``), then a token grid that is not empty."""
    family = family_class(spec.family)
    family.check_spec(spec)
    if spec.family != "fusion":
        rows, cols = family.token_grid(spec)
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

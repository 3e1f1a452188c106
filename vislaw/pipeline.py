"""Top floor of the library: the config as the workflow sees it.

``load_checked_config`` is what the Snakefile and every entry point call: the schema check
(vislaw.config) plus the checks that need the encoder zoo (fusion members, token grids) and
the training recipes (an encoder must support the recipe it is given), then the semantic checks
of vislaw.checks (what the config and the models' config files tell before the first job).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vislaw.checks import check_semantics
from vislaw.config import check_config, load_config
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import encoder_spec, resolve_encoders
from vislaw.host import check_folders
from vislaw.train.recipes import check_recipes, recipe_for


def load_checked_config(
    source: str | Path | Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, EncoderSpec]]:
    """Config (with defaults) and the resolved encoder specs; raises ConfigError naming the key."""
    config = check_config(source) if isinstance(source, Mapping) else load_config(source)
    specs = resolve_encoders(config)
    check_recipes(config, specs)
    check_semantics(config, specs)  # grids, layers, timesteps, batches (vislaw.checks)
    check_folders(config)  # folder keys that name files (vislaw.host)
    return config, specs


# The config keys whose values a step's outputs depend on, per rule (dotted; ``{dataset}`` is
# the job's wildcard). A job whose encoder is a wildcard also depends on that encoder's resolved
# spec (fusion members whole), and a training stage on the recipe its encoder follows
# (_train_values). Keys that change only speed, memory or bookkeeping (inference batch sizes,
# workers, checkpoint cadence, resources, device, warm_start, targets) are deliberately absent:
# changing them must recompute nothing. rules/common.smk hands the result to every rule as
# `params: settings=...`, so Snakemake's params rerun trigger reruns a job whose values changed.
STEP_KEYS: dict[str, tuple[str, ...]] = {
    "synthetic_data": ("seed", "data"),
    "tiny_llm": ("seed", "llm", "data.root", "data.pretrain", "data.instruct"),
    "check_data": ("data.root", "data.{dataset}"),
    "features": ("features", "data.root", "data.spair", "cache.revisions"),
    "fuse_features": (),
    "c_score": ("c_score", "data.root", "data.spair"),
    "c_scores_table": (),
    "stage1": ("seed", "llm", "cache.revisions", "data.root", "data.pretrain"),
    "stage2": ("seed", "llm", "cache.revisions", "data.root", "data.instruct"),
    "a_images": ("seed", "a_score.n_images", "data.benchmark_root", "eval.tasks"),
    "embeddings": (
        "seed",
        "a_score.n_captions",
        "a_score.dtype",
        "llm",
        "data.root",
        "data.pretrain",
    ),
    "a_scores": ("a_score.references", "benchmarks"),
    "eval_tasks": ("data.benchmark_root",),
    "evaluate": ("seed", "eval", "cache.revisions"),
    "benchmarks_table": ("eval.tasks",),
    "law_input": ("law.a_definition",),
    "law": ("law", "benchmarks"),
    "lmvr_images": ("seed", "lmvr.synthetic"),
    "lmvr": (  # not lmvr.probe: the probe job reads it
        "lmvr.image_folder",
        "lmvr.prompt",
        "lmvr.max_new_tokens",
        "lmvr.min_new_tokens",
        "lmvr.dtype",
        "lmvr.pooling",
        "lmvr.layers",
        "lmvr.corruptions",
        "lmvr.maps",
        "cache.revisions",
    ),
    "lmvr_probe": ("lmvr.probe", "lmvr.corruptions"),
    "policy_round": ("policy", "law.a_definition", "eval.tasks"),
    "policy_report": ("policy",),
    "training_curves": (),
    "report_tables": (),
}
# How a step runs, not what it computes (left out of every step's values).
NOT_RESULTS = (
    "c_score.block_size",
    "c_score.memory_gb",
    "a_score.batch_size",
    "eval.jobs",
    "eval.batch_size",
    "lmvr.batch_size",
    "train.num_workers",
    "train.save_total_limit",
    "train.keep_checkpoints",
    "train.stage1.save_steps",
    "train.stage2.save_steps",
)


def step_settings(
    config: Mapping[str, Any],
    specs: Mapping[str, EncoderSpec],
    step: str,
    wildcards: Mapping[str, str] | None = None,
) -> str:
    """The settings one job of ``step`` reads, as canonical JSON (sorted keys, no spaces).

    Rules declare it as a param: Snakemake records it with the outputs and plans a rerun of
    exactly the jobs whose string changed (its default rerun triggers include params), and
    their downstream jobs. ``config`` is the checked config (defaults filled), so a changed
    schema default reruns too.
    """
    if step not in STEP_KEYS:
        raise KeyError(f"step {step!r} has no entry in vislaw.pipeline.STEP_KEYS")
    wildcards = dict(wildcards or {})
    values: dict[str, Any] = {}
    for pattern in STEP_KEYS[step]:
        key = pattern.format(**wildcards)
        values[key] = _without(key, _lookup(config, key))
    encoder = wildcards.get("encoder")
    if encoder is not None:
        values["encoder"] = _spec_values(encoder_spec(specs, encoder))
    if step in ("stage1", "stage2") and encoder is not None:
        values["train"] = _train_values(config, int(step[-1]), encoder)
    return json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)


def _lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` (None where a level is absent: an unset optional section)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _without(key: str, value: Any) -> Any:
    """``value`` (at ``key``) less the NOT_RESULTS keys below it."""
    if not isinstance(value, Mapping):
        return value
    out = {}
    for name, item in value.items():
        sub = f"{key}.{name}"
        if sub not in NOT_RESULTS:
            out[name] = _without(sub, item)
    return out


def _spec_values(spec: EncoderSpec) -> dict[str, Any]:
    """A JSON form of an encoder's resolved spec with its fusion members' specs whole."""
    data = spec.to_attrs()
    data["members"] = [_spec_values(m) for m in spec.members]
    return data


def _train_values(config: Mapping[str, Any], stage: int, encoder: str) -> dict[str, Any]:
    """The ``train`` values a stage of ``encoder`` reads: the shared keys, its own stage's
    block (not the other stage's), and its recipe with that recipe's block (ConvLLaVA's phases
    run in stage 1), not the other encoders' recipe entries."""
    train = _without("train", config["train"])
    other = f"stage{3 - stage}"
    values = {k: v for k, v in train.items() if k not in (other, "recipe", "recipes", "convllava")}
    recipe = recipe_for(config, encoder)
    values["recipe"] = recipe
    if recipe == "convllava" and stage == 1:
        values["convllava"] = train.get("convllava")
    return values

"""What each rule asks the scheduler for, derived in one place (rules/common.smk calls this).

Why one place: the GPU need of a rule is a property of what it runs (a model on the GPU), so it
is listed once (``vislaw.gpu_rules.GPU_RULES``) instead of once in the config and again in the SLURM
profile. The config's ``resources:`` section may override counts and sizes per rule; the
cluster facts (GPU partition, GPU model) come from the environment the profile documents:

- a GPU rule gets ``gpu`` (1 unless the config says more) and, when set, ``gpu_model`` from
  ``resources.<rule>.gpu_model`` / ``resources.default.gpu_model`` / ``$VISLAW_GPU_MODEL``
  and ``slurm_partition`` from ``$VISLAW_SLURM_GPU_PARTITION``; the slurm executor plugin
  turns ``gpu`` + ``gpu_model`` into ``--gpus=<model>:<n>``;
- a config with ``device: cpu`` (demo, CI) asks for no GPU unless a rule's ``gpus`` is explicit
  (the SLURM test asks for gres GPUs that way and still computes on the CPU);
- a multi-node rule (``nodes`` > 1, training only) asks per node: ``gres=gpu[:model]:<n/nodes>``
  and ``nodes``, which vislaw.train.launch turns into an srun-launched torchrun rendezvous;
- ``runtime`` not given in the config comes from vislaw.cost's estimate for the job, with a
  safety factor, so time limits follow the estimated cost.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

from vislaw.cost import job_hours
from vislaw.gpu_rules import MULTI_NODE_RULES, rule_gpus, rule_settings

# Estimated hours x this = the time limit (queue noise, slower GPUs, checkpoint writes).
RUNTIME_SAFETY = 1.5


def rule_runtime(config: Mapping[str, Any], rule: str, encoder: str | None = None) -> int:
    """Minutes: the config's value for this rule, else the cost estimate (of this encoder's
    job, or the rule's longest) x safety, else the default/fallback."""
    explicit = config["resources"].get(rule, {}).get("runtime")
    if explicit is not None:
        return int(explicit)
    hours = job_hours(config, rule, rule_gpus(config, rule), encoder)
    if hours is None:
        return int(rule_settings(config, rule)["runtime"])
    return max(10, math.ceil(hours * RUNTIME_SAFETY * 60 / 10) * 10)


def rule_resources(
    config: Mapping[str, Any], rule: str, encoder: str | None = None
) -> dict[str, Any]:
    """Snakemake resources of ``rule`` (for one encoder's job when given): cpus_per_task,
    mem_mb, runtime and the GPU request."""
    merged = rule_settings(config, rule)
    out: dict[str, Any] = {
        "cpus_per_task": int(merged["cpus"]),
        "mem_mb": int(merged["mem_mb"]),
        "runtime": rule_runtime(config, rule, encoder),
    }
    gpus = rule_gpus(config, rule)
    if gpus <= 0:
        return out
    model = merged.get("gpu_model") or os.environ.get("VISLAW_GPU_MODEL")
    nodes = int(merged["nodes"]) if rule in MULTI_NODE_RULES else 1
    if nodes > 1:
        if gpus % nodes:
            from vislaw.config import ConfigError

            raise ConfigError(
                f"resources.{rule}.gpus", f"{gpus} GPUs do not split over {nodes} nodes"
            )
        out["nodes"] = nodes
        out["gres"] = f"gpu:{model}:{gpus // nodes}" if model else f"gpu:{gpus // nodes}"
    else:
        out["gpu"] = gpus
        if model:
            out["gpu_model"] = model
    partition = os.environ.get("VISLAW_SLURM_GPU_PARTITION")
    if partition:
        out["slurm_partition"] = partition
    return out


def job_gpus(resources: Mapping[str, Any]) -> tuple[int, int]:
    """(GPUs per node, nodes) of a running job from its Snakemake resources."""
    nodes = int(resources.get("nodes", 1) or 1)
    gres = str(resources.get("gres", "") or "")
    if gres.startswith("gpu"):
        return int(gres.rsplit(":", 1)[1]), nodes
    return int(resources.get("gpu", 0) or 0), nodes

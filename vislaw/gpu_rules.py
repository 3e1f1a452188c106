"""Which rules run a model on the GPU and what a rule gets when the config is silent.

The facts both the scheduler requests (vislaw.resources) and the cost estimate (vislaw.cost)
need; kept below both so that neither imports the other's module for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Rules that load a model on the GPU (encoders, the MLLM).
GPU_RULES = frozenset({"features", "stage1", "stage2", "embeddings", "evaluate", "lmvr"})
# Rules that may span nodes (torchrun rendezvous); the others run on one node.
MULTI_NODE_RULES = frozenset({"stage1", "stage2"})
# Rules that run another rule's step for some encoders: the same job with more declared outputs
# (ConvLLaVA's stage folders, rules/train.smk; outputs cannot be conditional). Their resources,
# settings and cost are the step's.
RULE_STEPS = {"stage1_encoder": "stage1", "stage2_encoder": "stage2"}
# What a rule gets when neither resources.<rule> nor resources.default names a key. These
# cannot be schema defaults: a default filled into resources.<rule> would hide
# resources.default (the section is a mapping of rule names layered over each other, so it has
# no Section model either).
FALLBACK = {"cpus": 1, "mem_mb": 4000, "runtime": 60, "nodes": 1}


def step_of(rule: str) -> str:
    """The step a rule runs (its own name but for the RULE_STEPS variants)."""
    return RULE_STEPS.get(rule, rule)


def rule_settings(config: Mapping[str, Any], rule: str) -> dict[str, Any]:
    """resources.<rule> over resources.default over FALLBACK (no runtime estimate yet)."""
    table = config["resources"]
    return {**FALLBACK, **table.get("default", {}), **table.get(rule, {})}


def rule_gpus(config: Mapping[str, Any], rule: str) -> int:
    """GPUs a job of ``rule`` asks for: explicit config value, else 1 for a GPU rule unless the
    config computes on the CPU."""
    explicit = config["resources"].get(rule, {}).get("gpus")
    if explicit is not None:
        return int(explicit)
    if rule in GPU_RULES and config["device"] != "cpu":
        return 1
    return 0

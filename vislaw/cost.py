"""What a run of a config costs before it starts: jobs, GPUs, hours and disk per rule.

``python -m vislaw.cost`` (or ``make cost``) prints the table for the config's ``targets``
(``--targets`` to cost another subset). The hours are estimates for one A100-80GB in bf16, from
published figures where there are any (LLaVA-1.5: stage 1 about 5.5 h and stage 2 about 20 h
on 8 A100s for Vicuna-7B; ConvLLaVA's two extra encoder phases), otherwise from throughput
rules of thumb stated next to each number. vislaw.resources turns them into time limits
(x ``RUNTIME_SAFETY``) when the config gives no ``runtime``. benchmarks/bench_gpu.py measures
the training figures on a real GPU; put measured numbers here when you have them.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# GPU-hours of one job at the paper's setting (A100-80GB, bf16).
DIFFUSION_FAMILIES = {"sd_unet", "sd_image_variations", "dit", "sd3"}
GPU_HOURS = {
    # SPair-71k test images (1,800 at most) through one encoder: ViTs ~0.05 s/image,
    # diffusion UNets at 512-768 px ~0.5 s/image (one denoising step + feature hooks).
    "features": 0.1,
    "features_diffusion": 0.3,
    # LLaVA-1.5 stage 1: 558K captions, projector only, ~5.5 h x 8 A100 = 44 GPU-h.
    "stage1": 44.0,
    # ConvLLaVA stage 1 = its init phase (~LLaVA stage 1) + its pretrain phase, which also
    # trains the LLM and encoder stages on 558K (about 1.5x a stage 2 step per sample).
    "stage1_convllava": 44.0 + 110.0,
    # LLaVA-1.5 stage 2: 665K conversations, projector + LLM, ~20 h x 8 A100 = 160 GPU-h.
    "stage2": 160.0,
    # A score: 100 images x 8 benchmarks + 100 captions through the 7B stage-1 model.
    "embeddings": 0.3,
    # lmms-eval, the 8 benchmarks (~38K questions, short answers) ~0.3 s/question in bf16.
    "evaluate": 3.2,
    "evaluate_benchmark": 0.6,
    # LMVR: generation (64 tokens) + hidden states for 10 conditions of the labelled folder
    # (~1,000 images: 10K generations at ~1 s each).
    "lmvr": 3.0,
}
# Disk one job leaves behind, GB: outputs plus the newest resumable checkpoint (DeepSpeed
# keeps fp32 master weights and Adam moments: ~16 bytes per trained parameter).
DISK_GB = {
    "features": 2.0,
    "stage1": 0.5,
    "stage1_convllava": 14.0 + 16 * 7.3,
    "stage2": 14.0 + 16 * 7.0,
    "embeddings": 0.5,
    "evaluate": 0.1,
    "lmvr": 2.0,
}
# Hugging Face cache: Vicuna-7B (13.5 GB) and every encoder's weights (0.4-10 GB each).
HF_CACHE_GB = 13.5 + 40.0


@dataclass
class Line:
    rule: str
    jobs: int
    gpus: int
    hours: float  # wall hours of one job on its GPUs
    disk_gb: float

    @property
    def gpu_hours(self) -> float:
        return self.jobs * self.hours * max(self.gpus, 1)


def _is_diffusion(config: Mapping[str, Any], encoder: str) -> bool:
    return config["encoders"][encoder]["family"] in DIFFUSION_FAMILIES


def _per_job_gpu_hours(config: Mapping[str, Any], rule: str, encoder: str | None) -> float | None:
    from vislaw.train.recipes import trains_encoder

    if rule == "features":
        return GPU_HOURS[
            "features_diffusion" if encoder and _is_diffusion(config, encoder) else "features"
        ]
    if rule == "stage1":
        epochs = config["train"]["stage1"]["epochs"]
        key = "stage1_convllava" if encoder and trains_encoder(config, encoder) else "stage1"
        return GPU_HOURS[key] * epochs
    if rule == "stage2":
        return GPU_HOURS["stage2"] * config["train"]["stage2"]["epochs"]
    if rule == "evaluate":
        per_benchmark = config["eval"]["jobs"] == "per_benchmark"
        return GPU_HOURS["evaluate_benchmark" if per_benchmark else "evaluate"]
    return GPU_HOURS.get(rule)


def job_hours(
    config: Mapping[str, Any], rule: str, gpus: int, encoder: str | None = None
) -> float | None:
    """Wall hours of ``encoder``'s job of ``rule`` (or the rule's longest) on ``gpus`` GPUs
    (ranks split the work), or None for a rule without an estimate."""
    encoders = [n for n, s in config["encoders"].items() if s["family"] != "fusion"]
    if encoder in config["encoders"]:
        encoders = [encoder]
    estimates = [_per_job_gpu_hours(config, rule, e) for e in (encoders or [None])]
    known = [h for h in estimates if h is not None]
    return max(known) / max(gpus, 1) if known else None


def _needed_rules(targets: Sequence[str]) -> set[str]:
    """The GPU rules a set of targets runs (rules/common.smk STAGE_TARGETS and the DAG)."""
    needs = {
        "features": {"features"},
        "c_score": {"features"},
        "stage1": {"stage1"},
        "stage2": {"stage1", "stage2"},
        "evaluate": {"stage1", "stage2", "evaluate"},
        "embeddings": {"stage1", "embeddings"},
        "a_score": {"stage1", "embeddings"},
        "lmvr": {"stage1", "stage2", "lmvr"},
        "law": {"features", "stage1", "stage2", "evaluate", "embeddings"},
        "report": {"features", "stage1", "stage2", "evaluate", "embeddings"},
    }
    rules: set[str] = set()
    for target in targets:
        rules |= needs.get(target, set())
    return rules


def _job_encoders(config: Mapping[str, Any], rule: str) -> list[str]:
    """Encoders that get a job of ``rule`` (fusions reuse their members' features)."""
    from vislaw.lmvr.settings import lmvr_settings
    from vislaw.train.recipes import trains_encoder

    names = list(config["encoders"])
    if rule == "features":
        return [n for n in names if config["encoders"][n]["family"] != "fusion"]
    if rule == "lmvr":
        return list(lmvr_settings(config).encoders)
    if rule == "stage1_only":
        return [n for n in names if trains_encoder(config, n)]
    return names


def cost_lines(config: Mapping[str, Any], targets: Sequence[str] | None = None) -> list[Line]:
    """One line per GPU rule the targets run (checked config with defaults filled)."""
    from vislaw.gpu_rules import rule_gpus

    targets = list(targets or config["targets"])
    rules = _needed_rules(targets)
    # Features of a trained encoder (ConvLLaVA) need its stage 1.
    if "features" in rules and _job_encoders(config, "stage1_only"):
        rules.add("stage1")
    order = ["features", "stage1", "stage2", "embeddings", "evaluate", "lmvr"]
    lines = []
    for rule in [r for r in order if r in rules]:
        encoders = _job_encoders(config, rule)
        if rule == "stage1" and not _needed_rules(targets) & {"stage1"}:
            encoders = _job_encoders(config, "stage1_only")
        per_encoder = config["eval"]["jobs"] == "per_encoder"
        jobs = len(encoders) * (
            1 if rule != "evaluate" or per_encoder else len(config["benchmarks"])
        )
        gpus = rule_gpus(config, rule)
        hours = [(_per_job_gpu_hours(config, rule, e) or 0.0) / max(gpus, 1) for e in encoders]
        disk = [DISK_GB.get(_disk_key(config, rule, e), 0.0) for e in encoders]
        mean_hours = sum(hours) / len(hours) if hours else 0.0
        lines.append(Line(rule, jobs, gpus, mean_hours, sum(disk)))
    return lines


def _disk_key(config: Mapping[str, Any], rule: str, encoder: str) -> str:
    from vislaw.train.recipes import trains_encoder

    return "stage1_convllava" if rule == "stage1" and trains_encoder(config, encoder) else rule


def format_table(lines: Sequence[Line]) -> str:
    """The Markdown table the README shows (and the CLI prints)."""
    rows = [
        "| rule | jobs | GPUs/job | est. h/job | GPU-hours | disk (GB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        rows.append(
            f"| {line.rule} | {line.jobs} | {line.gpus} | {line.hours:.1f} | "
            f"{line.gpu_hours:,.0f} | {line.disk_gb:,.0f} |"
        )
    total_gpu = sum(line.gpu_hours for line in lines)
    total_disk = sum(line.disk_gb for line in lines) + (HF_CACHE_GB if lines else 0.0)
    rows.append(
        f"| **total** (+{HF_CACHE_GB:.0f} GB HF cache) | {sum(line.jobs for line in lines)} | | | "
        f"**{total_gpu:,.0f}** | **{total_disk:,.0f}** |"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the cost table of a config's targets."""
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.cost",
        description="Estimated jobs, GPUs, hours and disk of a vislaw run, before you start it.",
    )
    parser.add_argument(
        "--config", default="config.yaml", help="config file (default: %(default)s)"
    )
    parser.add_argument(
        "--targets", nargs="+", help="stages to cost (default: the config's targets)"
    )
    args = parser.parse_args(argv)
    from vislaw.config import load_config

    config = load_config(args.config)
    targets = args.targets or config["targets"]
    print(f"# {args.config}: targets {' '.join(targets)}")
    print(format_table(cost_lines(config, targets)))
    total = sum(line.gpu_hours for line in cost_lines(config, targets))
    print(f"\n~{total:,.0f} GPU-hours (A100-80GB, bf16 estimates; vislaw/cost.py says where from).")
    return 0


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

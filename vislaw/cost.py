"""What a run of a config costs before it starts: jobs, GPUs, hours and disk per rule.

``python -m vislaw.cost`` (or ``make cost``) prints the table for the config's ``targets``
(``--targets`` to cost another subset, ``--json`` for one row per job). A user should see what a
run asks of a cluster before paying for it, and vislaw.resources turns the same estimates into
time limits (x ``RUNTIME_SAFETY``) when the config gives no ``runtime``.

The model (docs/performance.md, "Cost model"): training is anchored on LLaVA-1.5-7B's published
figures (LLaVA repo README, "Train": about 3.5 h for stage 1 on 558K captions and 10 h for stage 2
on 665K conversations, 8x A100-80GB, CLIP ViT-L/14@336 = 576 image tokens, Vicuna-7B = 6.74B
parameters, 1 epoch, full finetune). A job's GPU-hours are the anchor's GPU-hours scaled by
LLM parameters x tokens per sample (image tokens of the encoder's grid + the stage's mean text
tokens) x samples seen (``max_samples`` or the published set size, times ``epochs``, or
``max_steps`` x ``global_batch``), times ``LORA_FACTOR`` with LoRA; wall hours are GPU-hours /
GPUs. Inference rules (features, embeddings, evaluate, LMVR) use the throughput rules of thumb
stated next to each number, scaled by the LLM's size where they run the LLM.
benchmarks/bench_gpu.py measures the training figures on a real GPU: put measured numbers here.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

# LLaVA-1.5-7B (LLaVA repo README): wall hours on 8 A100s, set sizes, tokens, parameters.
REF_GPUS = 8
REF_HOURS = {"stage1": 3.5, "stage2": 10.0}
REF_SAMPLES = {"stage1": 558_128, "stage2": 665_298}  # blip_laion_cc_sbu_558k, mix665k
REF_IMAGE_TOKENS = 576  # CLIP ViT-L/14 at 336 px: 24 x 24
REF_PARAMS_B = 6.74  # Vicuna-7B v1.5 (Llama-2-7B)
# Mean text tokens per sample (our assumption, not published): a BLIP caption in the plain
# template (~12 words); a 665K conversation (short VQA turns to long LLaVA-Instruct answers).
TEXT_TOKENS = {"stage1": 40, "stage2": 250, "evaluate": 60}
# LoRA skips the LLM's weight gradients: forward + activation backward, ~2/3 of a full step.
LORA_FACTOR = 2 / 3
# Known LLM sizes (billions); other ids are read as "<n>b" in the name (vicuna-13b -> 13).
LLM_PARAMS_B = {"lmsys/vicuna-7b-v1.5": 6.74, "lmsys/vicuna-13b-v1.5": 13.0}

# GPU-hours of one inference job with the 7B LLM (A100-80GB, bf16); rules of thumb.
GPU_HOURS = {
    # SPair-71k test images (1,800 at most) through one encoder: ViTs ~0.05 s/image,
    # diffusion UNets at 512-768 px ~0.5 s/image (one denoising step + feature hooks). A
    # family names its row (VisionEncoder.feature_cost).
    "features": 0.1,
    "features_diffusion": 0.3,
    # A score: 100 images x 8 benchmarks + 100 captions through the 7B stage-1 model.
    "embeddings": 0.3,
    # lmms-eval, the 8 benchmarks (~38K questions, short answers) ~0.3 s/question in bf16.
    "evaluate": 3.2,
    "evaluate_benchmark": 0.6,
    # LMVR: generation (64 tokens) + hidden states for 10 conditions of the labelled folder
    # (config.yaml's Imagenette val, 3,925 images: ~39K generations at ~1 s each).
    "lmvr": 11.0,
}
# Disk one job leaves, GB: features and small outputs; a trained stage keeps its bf16 weights
# plus the newest resumable checkpoint (fp32 master weights and Adam moments: 16 bytes per
# trained parameter), per billion LLM parameters.
DISK_GB = {"features": 2.0, "stage1": 0.5, "embeddings": 0.5, "evaluate": 0.1, "lmvr": 2.0}
TRAINED_GB_PER_B = 2.0 + 16.0
# Hugging Face cache: Vicuna-7B (13.5 GB) and every encoder's weights (0.4-10 GB each).
HF_CACHE_GB = 13.5 + 40.0


@dataclass
class Line:
    """One rule's jobs; ``jobs_max`` above ``jobs`` when the count is a range (the policy
    finetunes as few as ``policy.min_finetunes`` and at most ``policy.budget`` encoders), and
    then ``picks``: the GPU-hours of the cheapest and of the dearest such set of encoders."""

    rule: str
    jobs: int
    gpus: int
    hours: float  # wall hours of one job on its GPUs (mean over the rule's jobs)
    disk_gb: float
    jobs_max: int | None = None
    picks: tuple[float, float] | None = None

    @property
    def gpu_hours(self) -> float:
        return self.picks[0] if self.picks else self.jobs * self.hours * max(self.gpus, 1)

    @property
    def gpu_hours_max(self) -> float:
        return self.picks[1] if self.picks else self.gpu_hours


def llm_params_b(config: Mapping[str, Any]) -> float:
    """The LLM's parameters in billions: the tiny Llama's from its shape, a known id's, or
    the ``<n>b`` in the id; ValueError naming ``llm.model_id`` otherwise."""
    llm = config["llm"]
    if llm.get("tiny"):
        from vislaw.vlm.random_llm import DEFAULT_VOCAB, TINY_LLAMA

        shape = {**TINY_LLAMA, **(llm["tiny"] if isinstance(llm["tiny"], Mapping) else {})}
        h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
        vocab = shape.get("vocab_size", DEFAULT_VOCAB)
        return (layers * (4 * h * h + 3 * h * i) + 2 * vocab * h) / 1e9
    model_id = str(llm.get("model_id"))
    if model_id in LLM_PARAMS_B:
        return LLM_PARAMS_B[model_id]
    found = re.search(r"(?<![0-9.])(\d+(?:\.\d+)?)[bB](?![a-zA-Z])", model_id.rsplit("/", 1)[-1])
    if found is None:
        raise ValueError(
            f"llm.model_id: cannot tell the size of {model_id!r}; add it to vislaw.cost.LLM_PARAMS_B"
        )
    return float(found.group(1))


def image_tokens(config: Mapping[str, Any], encoder: str | None) -> int:
    """LLM tokens of one image (the encoder's token grid; the paper's 576 when unknown)."""
    if encoder not in config["encoders"]:
        return REF_IMAGE_TOKENS
    from vislaw.encoders.registry import resolve_encoders, token_grid

    rows, cols = token_grid(resolve_encoders(config)[encoder])
    return rows * cols


def samples_seen(config: Mapping[str, Any], stage: str) -> int:
    """Samples a training stage steps through: ``max_steps`` x ``global_batch``, else the
    set size (``max_samples`` or LLaVA's) x ``epochs``."""
    settings = config["train"][stage]
    if settings.get("max_steps"):
        return int(settings["max_steps"]) * int(settings["global_batch"])
    size = min(settings.get("max_samples") or REF_SAMPLES[stage], REF_SAMPLES[stage])
    return size * int(settings["epochs"])


def train_gpu_hours(config: Mapping[str, Any], stage: str, encoder: str | None) -> float:
    """GPU-hours of one training stage: LLaVA-1.5-7B's, scaled by LLM parameters, tokens per
    sample and samples seen (LoRA: x LORA_FACTOR), summed over the phases the encoder's recipe
    prices (``Recipe.cost_phases``: ConvLLaVA's stage 1 adds its pretrain phase, which trains
    the LLM as a stage-2 step does, on the stage-1 captions)."""
    from vislaw.train.recipes import recipe_class

    def scaled(anchor: str, text: str, samples: int) -> float:
        ref_tokens = REF_SAMPLES[anchor] * (REF_IMAGE_TOKENS + TEXT_TOKENS[anchor])
        tokens = samples * (image_tokens(config, encoder) + TEXT_TOKENS[text])
        return REF_HOURS[anchor] * REF_GPUS * params / REF_PARAMS_B * tokens / ref_tokens

    params = llm_params_b(config)
    phases = recipe_class(config, encoder).cost_phases[stage] if encoder else ((stage, stage),)
    hours = sum(scaled(anchor, data, samples_seen(config, data)) for anchor, data in phases)
    if stage == "stage2" and config["train"]["stage2"].get("lora"):
        hours *= LORA_FACTOR
    return hours


def _feature_cost(config: Mapping[str, Any], encoder: str | None) -> str:
    """The GPU_HOURS row of ``encoder``'s features job: its family's ``feature_cost``."""
    if not encoder:
        return "features"
    from vislaw.encoders.registry import family_class

    return family_class(config["encoders"][encoder]["family"]).feature_cost


def _per_job_gpu_hours(config: Mapping[str, Any], rule: str, encoder: str | None) -> float | None:
    if rule == "features":
        return GPU_HOURS[_feature_cost(config, encoder)]
    if rule in ("stage1", "stage2"):
        return train_gpu_hours(config, rule, encoder)
    llm_scale = llm_params_b(config) / REF_PARAMS_B
    if rule == "evaluate":
        per_benchmark = config["eval"]["jobs"] == "per_benchmark"
        prompt = image_tokens(config, encoder) + TEXT_TOKENS["evaluate"]
        ref_prompt = REF_IMAGE_TOKENS + TEXT_TOKENS["evaluate"]
        hours = GPU_HOURS["evaluate_benchmark" if per_benchmark else "evaluate"]
        return hours * llm_scale * prompt / ref_prompt
    if rule in GPU_HOURS:
        return GPU_HOURS[rule] * llm_scale
    return None


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


def _disk_gb(config: Mapping[str, Any], rule: str, encoder: str) -> float:
    """Disk one job leaves (GB): a stage that trains the LLM keeps its weights and checkpoint."""
    from vislaw.train.recipes import trains_encoder

    full = rule == "stage2" and not config["train"]["stage2"].get("lora")
    if full or (rule == "stage1" and trains_encoder(config, encoder)):
        return TRAINED_GB_PER_B * llm_params_b(config)
    return DISK_GB.get(rule, 0.0)


# The GPU rules each target runs (rules/common.smk STAGE_TARGETS and the DAG).
NEEDS = {
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
    # A and C of every encoder; stage 2 + evaluation of the picks only (POLICY_RULES).
    "policy": {"features", "stage1", "embeddings"},
}
POLICY_RULES = ("stage2", "evaluate")
ORDER = ["features", "stage1", "stage2", "embeddings", "evaluate", "lmvr"]


def _needed_rules(targets: Sequence[str]) -> set[str]:
    """The GPU rules a set of targets runs for every encoder (the policy's picks aside)."""
    rules: set[str] = set()
    for target in targets:
        rules |= NEEDS.get(target, set())
    return rules


def policy_finetunes(config: Mapping[str, Any]) -> tuple[int, int]:
    """(fewest, most) encoders the policy finetunes: it cannot settle before
    ``policy.min_finetunes`` and stops at ``policy.budget`` (scores_file encoders not counted)."""
    n = len(config["encoders"])
    policy = config["policy"]
    return min(policy["min_finetunes"], policy["budget"], n), min(policy["budget"], n)


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


def _planned_rules(config: Mapping[str, Any], targets: Sequence[str]) -> dict[str, list[str]]:
    """rule -> the encoders that get one of its jobs, for ``targets``."""
    rules = _needed_rules(targets)
    planned = {r: _job_encoders(config, r) for r in ORDER if r in rules}
    # Features of a trained encoder (ConvLLaVA) need its stage 1.
    if "features" in rules and "stage1" not in rules and _job_encoders(config, "stage1_only"):
        planned["stage1"] = _job_encoders(config, "stage1_only")
    if "policy" in targets:
        for rule in POLICY_RULES:
            planned.setdefault(rule, _job_encoders(config, rule))
    return {r: planned[r] for r in ORDER if r in planned}


def job_rows(config: Mapping[str, Any], targets: Sequence[str] | None = None) -> list[dict]:
    """One row per job of the targets (``--json``): rule, encoder, benchmark (evaluate per
    benchmark), GPUs, wall hours, GPU-hours, disk; ``policy_pick`` marks the jobs that run only
    for the encoders the policy picks."""
    from vislaw.gpu_rules import rule_gpus

    targets = list(targets or config["targets"])
    optional = set(POLICY_RULES) - _needed_rules(targets) if "policy" in targets else set()
    per_benchmark = config["eval"]["jobs"] == "per_benchmark"
    rows = []
    for rule, encoders in _planned_rules(config, targets).items():
        gpus = rule_gpus(config, rule)
        split = rule == "evaluate" and per_benchmark
        for encoder in encoders:
            gpu_h = _per_job_gpu_hours(config, rule, encoder) or 0.0
            for bench in config["benchmarks"] if split else [None]:
                rows.append(
                    {
                        "rule": rule,
                        "encoder": encoder,
                        "benchmark": bench,
                        "gpus": gpus,
                        "hours": gpu_h / max(gpus, 1),
                        "gpu_hours": gpu_h,
                        "disk_gb": _disk_gb(config, rule, encoder) if bench is None else 0.0,
                        "policy_pick": rule in optional,
                    }
                )
    return rows


def cost_lines(config: Mapping[str, Any], targets: Sequence[str] | None = None) -> list[Line]:
    """One line per GPU rule the targets run (checked config with defaults filled); the
    policy's stage 2 and evaluation are ranges of jobs (:func:`policy_finetunes`)."""
    rows = job_rows(config, targets)
    fewest, most = policy_finetunes(config)
    lines = []
    for rule in ORDER:
        mine = [r for r in rows if r["rule"] == rule]
        if not mine:
            continue
        jobs = len(mine)
        hours = sum(r["hours"] for r in mine) / jobs
        disk = sum(r["disk_gb"] for r in mine)
        line = Line(rule, jobs, mine[0]["gpus"], hours, disk)
        if mine[0]["policy_pick"]:
            line = _policy_line(line, mine, fewest, most)
        lines.append(line)
    return lines


def _policy_line(line: Line, rows: Sequence[dict], fewest: int, most: int) -> Line:
    """A rule the policy runs for its picks only: ``fewest`` to ``most`` encoders, the cheapest
    ``fewest`` for the low GPU-hours and the dearest ``most`` for the high ones."""
    per_encoder: dict[str, float] = {}
    for row in rows:
        per_encoder[row["encoder"]] = per_encoder.get(row["encoder"], 0.0) + row["gpu_hours"]
    costs = sorted(per_encoder.values())
    jobs_each = len(rows) // len(costs)
    disk_each = line.disk_gb / len(costs)
    return Line(
        line.rule,
        fewest * jobs_each,
        line.gpus,
        line.hours,
        disk_each * most,
        jobs_max=most * jobs_each,
        picks=(sum(costs[:fewest]), sum(costs[len(costs) - most :])),
    )


def _span(low: float, high: float, fmt: str) -> str:
    return format(low, fmt) if low == high else f"{format(low, fmt)}-{format(high, fmt)}"


def format_table(lines: Sequence[Line]) -> str:
    """The Markdown table the README shows (and the CLI prints); ranges as ``low-high``."""
    rows = [
        "| rule | jobs | GPUs/job | est. h/job | GPU-hours | disk (GB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for line in lines:
        jobs = _span(line.jobs, line.jobs_max or line.jobs, "d")
        gpu_h = _span(line.gpu_hours, line.gpu_hours_max, ",.0f")
        rows.append(
            f"| {line.rule} | {jobs} | {line.gpus} | {line.hours:.1f} | {gpu_h} | "
            f"{line.disk_gb:,.0f} |"
        )
    low, high = total_gpu_hours(lines)
    total_disk = sum(line.disk_gb for line in lines) + (HF_CACHE_GB if lines else 0.0)
    jobs = _span(sum(x.jobs for x in lines), sum(x.jobs_max or x.jobs for x in lines), "d")
    rows.append(
        f"| **total** (+{HF_CACHE_GB:.0f} GB HF cache) | {jobs} | | | "
        f"**{_span(low, high, ',.0f')}** | **{total_disk:,.0f}** |"
    )
    return "\n".join(rows)


def total_gpu_hours(lines: Sequence[Line]) -> tuple[float, float]:
    """(low, high) GPU-hours of the lines (equal unless the policy's range is in them)."""
    return sum(x.gpu_hours for x in lines), sum(x.gpu_hours_max for x in lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: the cost table of a config's targets (``--json``: one row per job)."""
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
    parser.add_argument("--json", action="store_true", help="the per-job table as JSON")
    args = parser.parse_args(argv)
    from vislaw.config import load_config

    config = load_config(args.config)
    targets = args.targets or config["targets"]
    lines = cost_lines(config, targets)
    low, high = total_gpu_hours(lines)
    if args.json:
        summary = {"config": str(args.config), "targets": list(targets)}
        summary |= {"gpu_hours": [low, high], "lines": [asdict(x) for x in lines]}
        print(json.dumps({**summary, "jobs": job_rows(config, targets)}, indent=1))
        return 0
    print(f"# {args.config}: targets {' '.join(targets)}")
    print(format_table(lines))
    print(
        f"\n~{_span(low, high, ',.0f')} GPU-hours (A100-80GB, bf16; scaled from LLaVA-1.5-7B's "
        "published hours, docs/performance.md)."
    )
    return 0


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

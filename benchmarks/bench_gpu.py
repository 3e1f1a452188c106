"""GPU smoke benchmark at real size: stage-1 and stage-2 training steps on one GPU.

A random-init Llama-7B-shaped LLM (Vicuna-7B's shape), a CLIP-L/14-336-shaped encoder, the
mlp2x_gelu projector, bf16, gradient checkpointing and DeepSpeed (ZeRO-2 for stage 1 with the
projector training, ZeRO-3 for stage 2 with projector + LLM training), the optimizer step
included. Random weights: speed and memory do not depend on them and nothing is downloaded.
It reports samples/s, peak GPU memory and the projected wall time of the paper's runs (558K
captions for stage 1, 665K conversations for stage 2) on 1 GPU and on 8 (linear scaling, an
upper bound). It takes a few minutes; without CUDA it refuses (exit 2).

    python benchmarks/bench_gpu.py [--steps 6] [--batch 8] [--seq 1024] [--json out.json]
    python benchmarks/bench_gpu.py --tiny      # the same code on the CPU with 2-layer models

Stage 2 of a 7B model on a single GPU needs ~110 GB for weights, gradients and Adam states
(ZeRO-3 shards them over a node's 8 GPUs in the real run): on a smaller GPU it reports OOM.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PAPER_SAMPLES = {1: 558_128, 2: 665_298}  # LLaVA-Pretrain 558K, llava_v1_5_mix665k


def build_model(tiny: bool, device: str, dtype: torch.dtype):
    """Encoder (CLIP-L/336 shape), projector, LLM (Llama-7B shape); 2 layers each when tiny."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from vislaw.encoders.base import EncoderSpec
    from vislaw.encoders.registry import build_encoder
    from vislaw.vlm.model import LlavaStyleModel
    from vislaw.vlm.projector import build_projector

    layers = 2 if tiny else None
    width, llm_width = (64, 128) if tiny else (1024, 4096)
    vit = {
        "hidden_size": width,
        "intermediate_size": 4 * width,
        "num_hidden_layers": layers or 24,
        "num_attention_heads": 4 if tiny else 16,
        "patch_size": 14,
    }
    spec = EncoderSpec("clip336_size", "clip", input_size=336, tiny=vit, patch_size=14)
    encoder = build_encoder(spec, device=device, dtype=dtype)
    llama = LlamaConfig(
        hidden_size=llm_width,
        intermediate_size=256 if tiny else 11008,
        num_hidden_layers=layers or 32,
        num_attention_heads=4 if tiny else 32,
        num_key_value_heads=4 if tiny else 32,
        vocab_size=32000,
    )
    with torch.device(device):
        llm = LlamaForCausalLM._from_config(llama, dtype=dtype)
    projector = build_projector("mlp2x_gelu", width, llm_width).to(device, dtype)
    model = LlavaStyleModel(encoder, projector, llm)
    model.enable_gradient_checkpointing()
    return model


def deepspeed_engine(model, stage: int, batch: int, bf16: bool, hidden: int):
    """deepspeed.initialize with the pipeline's ZeRO config for this stage, 1 process."""
    import deepspeed

    from vislaw.train.engine import fill_deepspeed_config, init_distributed, read_deepspeed_config

    init_distributed(True, "cuda" if torch.cuda.is_available() else "cpu")
    raw = read_deepspeed_config(ROOT / f"resources/deepspeed/zero{2 if stage == 1 else 3}.json")
    config = fill_deepspeed_config(
        raw,
        micro_batch=batch,
        accumulation=1,
        world=1,
        max_grad_norm=1.0,
        bf16=bf16,
        hidden_size=hidden,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    return engine


def run_stage(model, stage: int, args: argparse.Namespace, device: str) -> dict:
    """Timed steps (the first is warm-up) of one stage; samples/s and peak memory."""
    from vislaw.vlm.chat_templates import IMAGE_TOKEN_INDEX

    model.requires_grad_(False)
    model.projector.requires_grad_(True)
    if stage == 2:
        model.llm.requires_grad_(True)
    hidden = model.llm.config.hidden_size
    engine = deepspeed_engine(model, stage, args.batch, device == "cuda", hidden)
    text = args.seq - model.image_tokens + 1
    ids = torch.randint(3, 32000, (args.batch, text), device=device)
    ids[:, 1] = IMAGE_TOKEN_INDEX
    labels = ids.clone()
    labels[:, :2] = -100
    mask = torch.ones_like(ids)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    pixels = torch.randn(args.batch, 3, 336, 336, device=device, dtype=dtype)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    stamps = []
    for _ in range(args.steps + 1):
        loss = engine(ids, mask, labels, pixels)["loss"]
        engine.backward(loss)
        engine.step()
        if device == "cuda":
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
    rate = args.batch * args.steps / (stamps[-1] - stamps[0])
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    hours = PAPER_SAMPLES[stage] / rate / 3600
    return {
        "stage": stage,
        "samples_per_s": round(rate, 3),
        "peak_gib": round(peak, 1) if peak is not None else None,
        "loss": round(float(loss), 4),
        "projected_hours_1_gpu": round(hours, 1),
        "projected_hours_8_gpus": round(hours / 8, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_gpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with 2-layer models")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per stage (+1 warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="samples per step")
    parser.add_argument("--seq", type=int, default=1024, help="tokens per sample (576 image)")
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        print(
            "bench_gpu.py needs a CUDA GPU (it measures real-size bf16 training); none is "
            "visible here. Use --tiny to check the code on the CPU.",
            file=sys.stderr,
        )
        return 2
    device = "cpu" if args.tiny else "cuda"
    if args.tiny:
        args.batch, args.seq = min(args.batch, 2), min(args.seq, 640)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    name = "CPU (tiny)" if args.tiny else torch.cuda.get_device_name()
    results = []
    for stage in args.stages:
        torch.manual_seed(0)
        model = build_model(args.tiny, device, dtype)
        try:
            row = run_stage(model, stage, args, device)
        except torch.cuda.OutOfMemoryError as err:
            row = {"stage": stage, "error": f"out of memory: {str(err).splitlines()[0]}"}
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
        row.update(device=name, batch=args.batch, seq=args.seq)
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Training throughput of the LLaVA-style MLLM.

CPU (always): the demo's tiny setting (a tiny encoder from config/demo.yaml, the tiny Llama,
the synthetic captions and conversations) trained through ``vislaw.train.runner.train_stage``.
Prints steady-state samples/s (first step excluded: it pays lazy imports and allocations) of
stage 1 and stage 2, and as baselines from the same run the frozen encoder's forward alone
(the ceiling if projector and LLM were free) and stage 2 without gradient checkpointing.

GPU (when CUDA is available): tokens/s of a real-size forward/backward -- a ViT-L/14-336-sized
encoder (the clip family's tiny path with CLIP-L's dimensions), mlp2x_gelu, a Llama-7B-sized
LLM, bf16, gradient checkpointing -- with the LLM frozen (stage 1) and trainable (stage 2).
Random weights: throughput does not depend on them, and nothing is downloaded.

    python benchmarks/bench_train.py [--encoder clip224] [--steps 8] [--gpu-batch 4]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch

from vislaw.config import load_config
from vislaw.data.synthetic import generate_from_config
from vislaw.encoders.registry import build_encoder, resolve_encoders
from vislaw.train.runner import train_stage
from vislaw.train.tiny_llm import write_config_llm

ROOT = Path(__file__).resolve().parents[1]


def steady_rate(stamps: list[float], per_step: int) -> float:
    """Samples/s between the first and the last step end (the first step is warm-up)."""
    if len(stamps) < 2:
        raise ValueError("need at least two steps")
    return per_step * (len(stamps) - 1) / (stamps[-1] - stamps[0])


def timed_stage(config: dict, stage: int, encoder: str, out: Path, stage1: Path | None) -> float:
    stamps: list[float] = []
    train_stage(
        config,
        stage,
        encoder,
        out,
        stage1_dir=stage1,
        callbacks=[lambda log, model: stamps.append(time.perf_counter())],
    )
    per_step = config["train"][f"stage{stage}"]["global_batch"]
    return steady_rate(stamps, per_step)


def encoder_rate(config: dict, encoder: str, batch: int, repeats: int) -> float:
    from PIL import Image

    from vislaw.data.llava import read_llava_json
    from vislaw.train.settings import stage_data

    json_path, folder = stage_data(config, 1)
    samples = read_llava_json(json_path)[:batch]
    images = [Image.open(folder / s.image).convert("RGB") for s in samples]
    model = build_encoder(resolve_encoders(config)[encoder])
    model.encode_images(images)  # warm-up
    tic = time.perf_counter()
    for _ in range(repeats):
        model.encode_images(images)
    return batch * repeats / (time.perf_counter() - tic)


def cpu_benchmark(args: argparse.Namespace) -> None:
    config = load_config(ROOT / "config/demo.yaml")
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    config["results_dir"] = str(work / "results")
    config["data"]["root"] = str(work / "data")
    config["train"]["stage1"].update(max_steps=args.steps, save_steps=10_000)
    config["train"]["stage2"].update(max_steps=args.steps, save_steps=10_000)
    torch.set_num_threads(args.threads)
    generate_from_config(config)
    write_config_llm(config)
    batch = config["train"]["stage1"]["global_batch"]
    enc = encoder_rate(config, args.encoder, batch, repeats=args.steps)
    config["train"]["gradient_checkpointing"] = False  # the demo's setting, stated
    s1 = timed_stage(config, 1, args.encoder, work / "s1", None)
    s2 = timed_stage(config, 2, args.encoder, work / "s2", work / "s1")
    with_ckpt = copy.deepcopy(config)
    with_ckpt["train"]["gradient_checkpointing"] = True
    s2_ckpt = timed_stage(with_ckpt, 2, args.encoder, work / "s2c", work / "s1")
    print(
        f"CPU, {args.threads} thread(s), encoder {args.encoder} (demo tiny), tiny Llama, "
        f"global batch {batch}, {args.steps} steps, synthetic demo data"
    )
    print(f"  encoder forward only    {enc:8.1f} samples/s  (baseline: the frozen encoder)")
    print(f"  stage 1 (projector)     {s1:8.1f} samples/s  = {s1 / enc:.2f} x encoder-only")
    print(f"  stage 2 (proj. + LLM)   {s2:8.1f} samples/s  = {s2 / enc:.2f} x encoder-only")
    print(f"  stage 2, grad. ckpt.    {s2_ckpt:8.1f} samples/s  = {s2_ckpt / s2:.2f} x without")


def real_size_benchmark(args: argparse.Namespace, smoke: bool = False) -> None:
    """Real-size forward/backward on CUDA; ``smoke`` runs the same code on the CPU with 2-layer
    stand-ins (only to check the code path where no GPU is at hand)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from vislaw.encoders.base import EncoderSpec
    from vislaw.vlm.chat_templates import IMAGE_TOKEN_INDEX
    from vislaw.vlm.model import LlavaStyleModel
    from vislaw.vlm.projector import build_projector

    device, dtype = ("cpu", torch.float32) if smoke else ("cuda", torch.bfloat16)
    layers = 2 if smoke else None
    vit_l = {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": layers or 24,
        "num_attention_heads": 16,
        "patch_size": 14,
    }
    spec = EncoderSpec("clip336_size", "clip", input_size=336, tiny=vit_l, patch_size=14)
    encoder = build_encoder(spec, device=device, dtype=dtype)
    llama7b = LlamaConfig(
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=layers or 32,
        num_attention_heads=32,
        num_key_value_heads=32,
        vocab_size=32000,
    )
    with torch.device(device):
        llm = LlamaForCausalLM._from_config(llama7b, dtype=dtype)
    projector = build_projector("mlp2x_gelu", 1024, 4096).to(device, dtype)
    model = LlavaStyleModel(encoder, projector, llm)
    model.enable_gradient_checkpointing()
    batch, seq = (1, 640) if smoke else (args.gpu_batch, args.gpu_seq)
    steps = 1 if smoke else args.gpu_steps
    text = seq - model.image_tokens + 1
    ids = torch.randint(3, 32000, (batch, text), device=device)
    ids[:, 1] = IMAGE_TOKEN_INDEX
    labels = ids.clone()
    labels[:, :2] = -100
    mask = torch.ones_like(ids)
    pixels = torch.randn(batch, 3, 336, 336, device=device)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    where = "CPU smoke run (2 layers each)" if smoke else f"GPU {torch.cuda.get_device_name()}"
    for name, llm_trains in (("stage 1 (LLM frozen)", False), ("stage 2 (LLM trains)", True)):
        llm.requires_grad_(llm_trains)
        model.train()
        for i in range(steps + 1):
            if i == 1:
                sync()
                tic = time.perf_counter()
            loss = model(ids, mask, labels, pixels)["loss"]
            loss.backward()
            model.zero_grad(set_to_none=True)
        sync()
        rate = batch * seq * steps / (time.perf_counter() - tic)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        print(
            f"{where}: {name}: {rate:,.0f} tokens/s forward+backward (batch {batch} x {seq} "
            f"tokens, {model.image_tokens} image tokens, {dtype}, gradient checkpointing, "
            f"peak {peak:.1f} GiB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--encoder", default="clip224", help="a demo encoder name")
    parser.add_argument("--steps", type=int, default=8, help="CPU steps per stage")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu-batch", type=int, default=4)
    parser.add_argument("--gpu-seq", type=int, default=2048)
    parser.add_argument("--gpu-steps", type=int, default=5)
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument(
        "--real-size-smoke",
        action="store_true",
        help="run the GPU benchmark's code on the CPU with 2-layer models",
    )
    args = parser.parse_args()
    if not args.skip_cpu:
        cpu_benchmark(args)
    if torch.cuda.is_available():
        real_size_benchmark(args)
    else:
        print("no CUDA device: the real-size GPU benchmark was skipped")
        if args.real_size_smoke:
            real_size_benchmark(args, smoke=True)


if __name__ == "__main__":
    main()

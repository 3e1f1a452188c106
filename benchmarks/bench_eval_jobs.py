"""Evaluate-rule job split: one lmms-eval process per encoder vs one per encoder x benchmark.

Same model, same four local benchmarks, same run. Builds a tiny stage-2 folder (tiny CLIP +
tiny Llama, untrained: only the time matters) and four synthetic benchmark sets, then times
``python -m vislaw evaluate`` (a) once with all four benchmarks, as the default
``eval.jobs: per_encoder`` does, and (b) four times with one benchmark each
(``per_benchmark``). Prints both wall times and the ratio; on the demo, multiply by the number
of encoders.

    python benchmarks/bench_eval_jobs.py [--questions 16 --benchmarks 4 --threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 220, 40),
}


def tiny_stage2(root: Path) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vislaw.encoders.base import EncoderSpec
    from vislaw.encoders.registry import build_encoder
    from vislaw.vlm.checkpoints import VlmInfo, write_stage
    from vislaw.vlm.projector import build_projector
    from vislaw.vlm.random_llm import write_tiny_llm

    llm_dir = write_tiny_llm([f"The shape is {c}." for c in COLOURS] * 4, root / "llm0")
    spec = EncoderSpec("clip224", "clip", input_size=112, tiny={}, patch_size=14)
    encoder = build_encoder(spec)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    torch.manual_seed(0)
    projector = build_projector("mlp2x_gelu", encoder.channels, llm.config.hidden_size)
    info = VlmInfo.of_parts(
        2, spec, encoder, llm, projector_type="mlp2x_gelu", template="vicuna_v1"
    )
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    return write_stage(root / "stage2", info, projector.state_dict(), llm, tokenizer)


def benchmark_sets(root: Path, names: list[str], questions: int) -> Path:
    from vislaw.eval.local_tasks import write_task_folder

    tasks = root / "tasks"
    for name in names:
        folder = root / "sets" / name
        (folder / "images").mkdir(parents=True)
        lines = []
        for i in range(questions):
            colour = list(COLOURS)[i % len(COLOURS)]
            Image.new("RGB", (96, 96), COLOURS[colour]).save(folder / "images" / f"{i}.png")
            row = {"question_id": i, "image": f"{i}.png", "question": "What color is it?"}
            lines.append(json.dumps({**row, "options": list(COLOURS), "answer": colour}))
        (folder / "questions.jsonl").write_text("\n".join(lines) + "\n")
        write_task_folder(folder, tasks, name)
    return tasks


def run(stage2: Path, tasks: Path, names: list[str], out: Path, threads: int) -> float:
    command = [sys.executable, "-m", "vislaw", "evaluate", "--pretrained", str(stage2)]
    for name in names:
        command += ["--benchmark", name]
    command += ["--include-path", str(tasks), "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_DATASETS_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--benchmarks", type=int, default=4, choices=[1, 2, 3, 4])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    names = ["synth_color", "synth_shape", "synth_position", "synth_count"][: args.benchmarks]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stage2 = tiny_stage2(root)
        tasks = benchmark_sets(root, names, args.questions)
        run(stage2, tasks, names[:1], root / "warm", args.threads)  # page cache, .pyc files
        together = run(stage2, tasks, names, root / "a", args.threads)
        apart = sum(run(stage2, tasks, [n], root / f"b-{n}", args.threads) for n in names)
    print(f"{len(names)} benchmarks x {args.questions} questions, tiny CLIP@112 + tiny Llama")
    print(f"one process, all benchmarks (per_encoder):  {together:6.1f} s")
    print(f"one process per benchmark (per_benchmark):  {apart:6.1f} s")
    print(f"ratio per_benchmark / per_encoder:          {apart / together:6.2f}x")


if __name__ == "__main__":
    main()

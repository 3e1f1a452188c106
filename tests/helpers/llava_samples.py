"""Tiny LLaVA-format data for the training tests: coloured shapes on non-square canvases,
captions that name the colour and shape, conversations with one text-only sample in four."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (40, 60, 220),
    "yellow": (230, 220, 40),
}
SHAPES = ("square", "circle")


def draw(colour: str, shape: str, size: tuple[int, int] = (40, 28)) -> Image.Image:
    image = Image.new("RGB", size, (245, 245, 245))
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    pen = ImageDraw.Draw(image)
    (pen.rectangle if shape == "square" else pen.ellipse)(box, fill=COLOURS[colour])
    return image


def write_llava_data(root: Path, n_pretrain: int = 16, n_instruct: int = 16) -> dict[str, Any]:
    """Writes pretrain.json, instruct.json and images/ under ``root``; returns the data config."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    combos = [(c, s) for c in COLOURS for s in SHAPES]
    pretrain, instruct = [], []
    for i in range(max(n_pretrain, n_instruct)):
        colour, shape = combos[i % len(combos)]
        name = f"{i:03d}.png"
        draw(colour, shape).save(images / name)
        if i < n_pretrain:
            pretrain.append(
                {
                    "id": f"cap{i}",
                    "image": name,
                    "conversations": [
                        {"from": "human", "value": "<image>\nDescribe the image briefly."},
                        {"from": "gpt", "value": f"a {colour} {shape} on a white background"},
                    ],
                }
            )
        if i < n_instruct:
            sample = {
                "id": f"ins{i}",
                "conversations": [
                    {"from": "human", "value": "What colour is the shape?\n<image>"},
                    {"from": "gpt", "value": f"It is {colour}."},
                    {"from": "human", "value": "And its shape?"},
                    {"from": "gpt", "value": f"A {shape}."},
                ],
            }
            if i % 4 == 3:  # text-only
                sample["conversations"] = [
                    {"from": "human", "value": "Name a colour."},
                    {"from": "gpt", "value": f"{colour.capitalize()}."},
                ]
            else:
                sample["image"] = name
            instruct.append(sample)
    (root / "pretrain.json").write_text(json.dumps(pretrain))
    (root / "instruct.json").write_text(json.dumps(instruct))
    return {
        "root": str(root),
        "pretrain": {"json": "pretrain.json", "image_folder": "images"},
        "instruct": {"json": "instruct.json", "image_folder": "images"},
    }


def train_config(tmp: Path, **train: Any) -> dict[str, Any]:
    """A checked-config-shaped dict for CPU training of a tiny CLIP + tiny Llama."""
    data = write_llava_data(tmp / "data")
    stage = {"per_device_batch": 2, "global_batch": 4, "save_steps": 2, "deepspeed": None}
    config = {
        "run": "t",
        "results_dir": str(tmp / "results"),
        "seed": 0,
        "device": "cpu",
        "encoders": {
            "clip_t": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}
        },
        "llm": {"tiny": True},
        "data": data,
        "train": {
            "max_length": 96,
            "bf16": False,
            "gradient_checkpointing": False,
            "num_workers": 0,
            "use_deepspeed": "never",
            "stage1": {**stage, "lr": 1e-2, "max_steps": 6},
            "stage2": {**stage, "lr": 1e-3, "max_steps": 4},
        },
    }
    for key, value in train.items():
        if isinstance(value, dict):
            config["train"].setdefault(key, {}).update(value)
        else:
            config["train"][key] = value
    return config

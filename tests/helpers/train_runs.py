"""A tiny training run's setup and its probes: the training tests, LoRA's and several ranks'
start from the same checked config, data and tiny LLM, and kill a run mid-way to resume it."""

from __future__ import annotations

import csv
from pathlib import Path

from helpers.llava_samples import train_config
from vislaw.config import check_config
from vislaw.data.llava import conversation_texts, read_llava_json
from vislaw.train.settings import llm_source
from vislaw.vlm.random_llm import write_tiny_llm


def setup_run(tmp: Path, **train) -> dict:
    """Checked config, data and the tiny LLM (the tiny_llm rule's job) under ``tmp``."""
    config = check_config(train_config(tmp, **train))
    data = Path(config["data"]["root"])
    texts = [
        *conversation_texts(read_llava_json(data / "pretrain.json")),
        *conversation_texts(read_llava_json(data / "instruct.json")),
    ]
    write_tiny_llm(texts, llm_source(config), seed=0)
    return config


def losses(folder: Path) -> list[float]:
    with (folder / "loss.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


class Crash(RuntimeError):
    """Stands in for a SIGKILL: the process state is abandoned mid-run."""


def crash_at(step: int):
    def callback(log, model):
        if log.step == step:
            raise Crash(f"killed after step {step}")

    return callback

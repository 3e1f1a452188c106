"""Nothing non-finite or diverged is exported (issue 16, class 4): the trained weights are
checked after every step and before the export, on the tiny CLIP + tiny Llama on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from helpers.llava_samples import train_config
from vislaw.config import ConfigError, check_config
from vislaw.data.llava import conversation_texts, read_llava_json
from vislaw.train.guard import DIVERGENCE_FACTOR, DivergenceError, DivergenceGuard
from vislaw.train.runner import train_stage
from vislaw.train.settings import llm_source
from vislaw.vlm.random_llm import write_tiny_llm


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("diverge")
    config = check_config(train_config(tmp))
    data = Path(config["data"]["root"])
    texts = [
        *conversation_texts(read_llava_json(data / "pretrain.json")),
        *conversation_texts(read_llava_json(data / "instruct.json")),
    ]
    write_tiny_llm(texts, llm_source(config), seed=0)
    return config


def _with_lr(config: dict, stage: int, lr: float, steps: int) -> dict:
    key = f"stage{stage}"
    section = {**config["train"][key], "lr": lr, "max_steps": steps, "warmup_ratio": 0.0}
    return {**config, "train": {**config["train"], key: section}}


@pytest.mark.parametrize(
    ("lr", "message"),
    [(1e6, r"training diverged at step 1: weight 'projector\..*'"), (math.inf, "not finite")],
    ids=["lr_1e6", "lr_inf"],
)
def test_bad_lr_stops_before_any_export(run, tmp_path, lr, message):
    """lr 1e6 used to export weights of size 1e6 with exit 0; lr inf all-NaN weights next to
    a complete-looking vlm.json. Both stop now, naming stage, step and the lr key."""
    config = _with_lr(run, 1, lr, steps=3)
    out = tmp_path / "s1"
    with pytest.raises(DivergenceError, match=message) as info:
        train_stage(config, 1, "clip_t", out)
    text = str(info.value)
    assert "llava.stage1 'clip_t'" in text and "train.stage1.lr" in text
    assert "at step 1" in text  # the first optimizer step, not the end of the run
    assert not (out / "vlm.json").exists()
    assert not (out / "projector.safetensors").exists()


def test_stage2_llm_divergence_is_caught(run, tmp_path):
    s1 = train_stage(_with_lr(run, 1, 1e-2, steps=2), 1, "clip_t", tmp_path / "s1")
    out = tmp_path / "s2"
    with pytest.raises(DivergenceError, match=r"llava.stage2 'clip_t'.*at step 1") as info:
        train_stage(_with_lr(run, 2, 1e6, steps=2), 2, "clip_t", out, stage1_dir=s1)
    assert "train.stage2.lr" in str(info.value)
    assert not (out / "vlm.json").exists() and not (out / "llm").exists()


def test_a_sane_run_passes_the_guard(run, tmp_path):
    out = train_stage(_with_lr(run, 1, 1e-2, steps=2), 1, "clip_t", tmp_path / "ok")
    assert (out / "vlm.json").is_file()


def test_export_check_sees_frozen_and_gathered_tensors():
    model = torch.nn.Linear(3, 2)
    guard = DivergenceGuard.start(model, "llava.stage1 'x'", "Lower train.stage1.lr.")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    guard.check_state(state, 4)  # the start state passes
    state["frozen.weight"] = torch.tensor([1.0, float("nan")])
    with pytest.raises(DivergenceError, match=r"'frozen.weight' is not finite .* at step 4"):
        guard.check_state(state, 4)
    del state["frozen.weight"]
    state["weight"] = state["weight"] + 2 * DIVERGENCE_FACTOR
    with pytest.raises(DivergenceError, match="diverged at step 4: weight 'weight'"):
        guard.check_state(state, 4)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_lr_is_refused_by_the_config_check(run, value):
    with pytest.raises(ConfigError) as info:
        check_config(_with_lr(run, 1, value, steps=1))
    assert info.value.key == "train.stage1.lr"

"""Cheaper finetunes for the policy mode: LoRA on the LLM in stage 2 (saved as an adapter,
merged when evaluation loads the model) and a seeded ``max_samples`` subset; both resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.train_runs import Crash, crash_at, losses, setup_run
from vislaw.config import ConfigError, check_config
from vislaw.train.runner import train_stage
from vislaw.train.settings import StageSettings
from vislaw.vlm.checkpoints import VlmInfo
from vislaw.vlm.inference import load_vlm

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "targets": ["q_proj", "v_proj"]}


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> tuple[dict, Path]:
    tmp = tmp_path_factory.mktemp("lora")
    config = setup_run(tmp, stage2={"lora": LORA})
    return config, train_stage(config, 1, "clip_t", tmp / "stage1")


def adapter(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "llm" / "adapter_model.safetensors"))


def test_lora_stage2_saves_an_adapter_that_loading_merges(stage1, tmp_path):
    config, s1 = stage1
    s2 = train_stage(config, 2, "clip_t", tmp_path / "s2", stage1_dir=s1)
    info = VlmInfo.read(s2)
    assert info.llm_adapter == "llm"
    assert (s2 / "llm/adapter_config.json").is_file()
    assert not (s2 / "llm/model.safetensors").exists()  # no full LLM copy
    trainable = info.training["trainable"]
    assert all(torch.isfinite(torch.tensor(losses(s2))))
    base, tuned = load_vlm(s1).model.llm.state_dict(), load_vlm(s2).model.llm.state_dict()
    assert set(base) == set(tuned)  # merged back into a plain LLM
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed), changed
    assert sum(trainable.values()) < sum(v.numel() for v in base.values())


def test_lora_stage2_resumes_to_the_uninterrupted_adapter(stage1, tmp_path):
    config, s1 = stage1
    whole = train_stage(config, 2, "clip_t", tmp_path / "whole", stage1_dir=s1)
    with pytest.raises(Crash):
        train_stage(config, 2, "clip_t", tmp_path / "cut", stage1_dir=s1, callbacks=[crash_at(3)])
    steps = []
    cut = train_stage(
        config,
        2,
        "clip_t",
        tmp_path / "cut",
        stage1_dir=s1,
        callbacks=[lambda log, model: steps.append(log.step)],
    )
    assert steps == [3, 4]  # steps 1-2 came from the checkpoint
    a, b = adapter(whole), adapter(cut)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert losses(whole) == losses(cut)


def test_max_samples_trains_on_a_seeded_subset_and_resumes(stage1, tmp_path):
    config, _ = stage1
    config = {**config, "train": {**config["train"]}}
    config["train"]["stage1"] = {**config["train"]["stage1"], "max_samples": 8}
    full = StageSettings.from_config(stage1[0], 1)
    subset = StageSettings.from_config(config, 1)
    assert full.fingerprint() != subset.fingerprint()  # never resumed from the full run
    whole = train_stage(config, 1, "clip_t", tmp_path / "whole")
    assert VlmInfo.read(whole).training["samples"] == 8
    with pytest.raises(Crash):
        train_stage(config, 1, "clip_t", tmp_path / "cut", callbacks=[crash_at(3)])
    cut = train_stage(config, 1, "clip_t", tmp_path / "cut")
    assert losses(cut) == losses(whole)


def test_lora_in_stage1_is_rejected_by_the_schema(tmp_path):
    config = setup_run(tmp_path)
    config["train"]["stage1"]["lora"] = LORA
    with pytest.raises(ConfigError, match="lora"):
        check_config(config)

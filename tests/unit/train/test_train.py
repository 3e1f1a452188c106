"""Training: the stage-1 loss falls, a killed run resumes to the same result, a NaN loss
stops the run, stage 2 continues from stage 1, batch arithmetic, data order, and the
DeepSpeed path (ZeRO-2 stage 1, ZeRO-3 stage 2) on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.llava_samples import train_config, write_llava_data
from helpers.paths import ROOT
from helpers.train_runs import Crash, crash_at, losses, setup_run
from vislaw.config import ConfigError, check_config
from vislaw.data.llava import LlavaCollator, LlavaDataset, conversation_texts, read_llava_json
from vislaw.train.engine import fill_deepspeed_config, read_deepspeed_config
from vislaw.train.plan import StepPlan, modality_grouped_order
from vislaw.train.runner import train_stage
from vislaw.train.settings import REPO_ROOT, LoraSettings, StageSettings, llm_source
from vislaw.vlm.chat_templates import get_template
from vislaw.vlm.checkpoints import VlmInfo
from vislaw.vlm.inference import load_vlm
from vislaw.vlm.random_llm import write_tiny_llm


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    return setup_run(tmp_path_factory.mktemp("run"))


def projector(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "projector.safetensors"))


# ---- the Done-when tests ----------------------------------------------------------------------
def test_stage1_loss_falls_and_only_the_projector_trains(run, tmp_path):
    from transformers import AutoModelForCausalLM

    config = {
        **run,
        "train": {
            **run["train"],
            "stage1": {**run["train"]["stage1"], "max_steps": 16, "save_steps": 100},
        },
    }
    seen = {}

    def keep_model(log, model):
        seen["model"] = model

    out = train_stage(config, 1, "clip_t", tmp_path / "s1", callbacks=[keep_model])
    values = losses(out)
    assert len(values) == 16
    assert sum(values[-3:]) / 3 < sum(values[:3]) / 3 - 0.2, values
    llm = AutoModelForCausalLM.from_pretrained(llm_source(run))
    trained = seen["model"].llm.state_dict()
    assert all(torch.equal(trained[k], v) for k, v in llm.state_dict().items())
    info = VlmInfo.read(out)
    assert info.stage == 1 and info.template == "plain" and info.training["steps"] == 16
    assert not (out / "checkpoints").exists()  # removed after success


KILL_SCRIPT = """
import json, os, signal, sys
from vislaw.train.runner import train_stage

def kill(log, model):
    if log.step == 5:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no finally blocks: a real kill

config = json.loads(open(sys.argv[1]).read())
train_stage(config, 1, "clip_t", sys.argv[2], callbacks=[kill])
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(run, tmp_path):
    whole = train_stage(run, 1, "clip_t", tmp_path / "whole")
    (tmp_path / "config.json").write_text(json.dumps(run))
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "config.json"), str(killed)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (killed / "checkpoints/latest").read_text() == "step-00000004"
    assert len(losses(killed)) == 5
    assert not (killed / "vlm.json").exists()
    resumed_from = []
    train_stage(
        run, 1, "clip_t", killed, callbacks=[lambda log, model: resumed_from.append(log.step)]
    )
    assert resumed_from == [5, 6]  # steps 1-4 came from the checkpoint
    assert losses(killed) == losses(whole)
    a, b = projector(whole), projector(killed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_of_another_setting_are_not_resumed(run, tmp_path):
    with pytest.raises(Crash):
        train_stage(run, 1, "clip_t", tmp_path / "s1", callbacks=[crash_at(3)])
    other = {**run, "train": {**run["train"], "stage1": {**run["train"]["stage1"], "lr": 5e-3}}}
    steps = []
    train_stage(
        other, 1, "clip_t", tmp_path / "s1", callbacks=[lambda log, model: steps.append(log.step)]
    )
    assert steps == [1, 2, 3, 4, 5, 6]


def test_a_moved_results_tree_resumes_stage2_from_its_checkpoint(tmp_path):
    """`mv results/t results/moved` (config run: moved): stage 2 goes on from its checkpoint
    (issue 22, scope 5); the fingerprint held the stage-1 folder's and the LLM's absolute path."""
    config = setup_run(tmp_path)  # its own run: the tiny LLM lies in the folder that moves
    run_dir = Path(config["results_dir"]) / config["run"]
    s1 = train_stage(config, 1, "clip_t", run_dir / "stage1/clip_t")
    with pytest.raises(Crash):
        train_stage(
            config, 2, "clip_t", run_dir / "stage2/clip_t", stage1_dir=s1, callbacks=[crash_at(3)]
        )
    moved = run_dir.rename(run_dir.with_name("moved"))
    steps = []
    train_stage(
        {**config, "run": "moved"},
        2,
        "clip_t",
        moved / "stage2/clip_t",
        stage1_dir=moved / "stage1/clip_t",
        callbacks=[lambda log, model: steps.append(log.step)],
    )
    assert steps == [3, 4]  # steps 1-2 came from the checkpoint (save_steps 2)


def test_nan_loss_stops_with_a_clear_error(run, tmp_path):
    def poison(log, model):
        with torch.no_grad():
            next(model.projector.parameters()).fill_(float("nan"))

    with pytest.raises(FloatingPointError, match=r"non-finite loss .* at step 2.*samples \['cap"):
        train_stage(run, 1, "clip_t", tmp_path / "nan", callbacks=[poison])
    assert not (tmp_path / "nan/vlm.json").exists()


def test_stage2_starts_from_stage1_and_trains_the_llm(run, tmp_path):
    s1 = train_stage(run, 1, "clip_t", tmp_path / "stage1")
    s2 = train_stage(run, 2, "clip_t", tmp_path / "stage2", stage1_dir=s1)
    info = VlmInfo.read(s2)
    assert info.stage == 2 and info.template == "vicuna_v1" and info.llm == "llm"
    assert (s2 / "llm/config.json").is_file() and (s2 / "llm/tokenizer.json").is_file()
    assert len(losses(s2)) == 4
    before, after = load_vlm(s1), load_vlm(s2)
    w0 = before.model.llm.state_dict()
    w1 = after.model.llm.state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    p0, p1 = projector(s1), projector(s2)
    assert any(not torch.equal(p0[k], p1[k]) for k in p0)


# ---- settings, data, order --------------------------------------------------------------------
def test_global_batch_is_per_device_times_accumulation_times_world(run):
    settings = StageSettings.from_config(run, 1)
    assert settings.accumulation(1) == 2 and settings.accumulation(2) == 1
    with pytest.raises(ConfigError, match="train.stage1.global_batch"):
        settings.accumulation(3)
    paper = StageSettings.from_config(check_config({**run, "train": {}}), 2)
    assert (paper.lr, paper.global_batch, paper.template) == (2e-5, 128, "vicuna_v1")
    assert paper.accumulation(8) == 1 and paper.deepspeed_path().name == "zero3.json"


def test_global_batch_larger_than_the_data_names_the_key(run, tmp_path):
    big = {
        **run,
        "train": {**run["train"], "stage1": {**run["train"]["stage1"], "global_batch": 32}},
    }
    with pytest.raises(ConfigError, match=r"train.stage1.global_batch.*16 samples"):
        train_stage(big, 1, "clip_t", tmp_path / "big")


def test_unknown_template_names_the_key(run):
    bad = check_config({**run, "train": {"stage2": {"template": "nope"}}})
    with pytest.raises(ConfigError, match="train.stage2.template"):
        StageSettings.from_config(bad, 2)


def test_lora_model_matches_its_schema_node(run):
    """train.stage2.lora may be null, so the drift test cannot reach it through Stage2Section:
    compare LoraSettings with its schema node here, and build it from a checked config."""
    from helpers.schema_nodes import drift, resolve, schema_node

    node = resolve(schema_node("train.stage2")["properties"]["lora"])
    assert drift(LoraSettings, node, "train.stage2.lora") == []
    settings = StageSettings.from_config(
        check_config({**run, "train": {"stage2": {"lora": {}}}}), 2
    )
    lora = settings.lora_settings()
    assert lora is not None and (lora.r, lora.targets) == (
        8,
        ("q_proj", "k_proj", "v_proj", "o_proj"),
    )
    assert StageSettings.from_config(run, 2).lora_settings() is None


def test_step_plan_is_a_function_of_seed_and_step():
    plan = StepPlan(10, 4, seed=1)
    assert plan.steps_per_epoch == 2
    again = StepPlan(10, 4, seed=1)
    assert [plan.global_indices(s) for s in range(5)] == [
        again.global_indices(s) for s in reversed(range(5))
    ][::-1]
    assert len(set(plan.global_indices(0) + plan.global_indices(1))) == 8
    micro = [plan.micro_batches(3, rank, 2, 1) for rank in range(2)]
    assert sorted(i for rank in micro for mb in rank for i in mb) == sorted(plan.global_indices(3))
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        StepPlan(3, 4, seed=0)


def test_modality_grouping_keeps_batches_single_modality():
    import numpy as np

    lengths = [5, -3, 7, -2, 9, 4, -8, 6, 1, -1, 3, 2]  # 8 image, 4 text-only samples
    order = modality_grouped_order(lengths, 4, np.random.default_rng(0))
    assert sorted(order) == list(range(12))
    for start in range(0, 12, 4):
        signs = {lengths[i] > 0 for i in order[start : start + 4]}
        assert len(signs) == 1
        chunk = [abs(lengths[i]) for i in order[start : start + 4]]
        assert chunk == sorted(chunk, reverse=True)


def test_dataset_items_collate_and_name_a_missing_image(tmp_path, run):
    from transformers import AutoTokenizer

    from vislaw.encoders.registry import build_encoder, resolve_encoders
    from vislaw.vlm.model import preprocess_images

    data = write_llava_data(tmp_path)
    samples = read_llava_json(tmp_path / "instruct.json")
    encoder = build_encoder(resolve_encoders(run)["clip_t"])
    tok = AutoTokenizer.from_pretrained(llm_source(run))
    ds = LlavaDataset(
        samples,
        tmp_path / data["instruct"]["image_folder"],
        tok,
        get_template("vicuna_v1"),
        lambda ims: preprocess_images(encoder, ims),
        image_tokens=16,
        max_length=96,
    )
    batch = LlavaCollator(pad_token_id=0)([ds[0], ds[3]])  # sample 3 is text-only
    assert batch["image_mask"].tolist() == [True, False]
    assert batch["pixel_values"].shape == (2, 3, 56, 56)
    assert float(batch["pixel_values"][1].abs().sum()) == 0.0
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    assert ds.modality_lengths()[3] < 0 < ds.modality_lengths()[0]
    (tmp_path / "images" / "000.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"sample ins0: image not found: .*000\.png"):
        ds[0]
    (tmp_path / "images" / "001.png").write_bytes(b"not a png")
    with pytest.raises(OSError, match=r"sample ins1: cannot read image .*001\.png"):
        ds[1]


def test_reader_names_the_bad_sample(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"id": "x7", "conversations": [{"from": "bot", "value": "hi"}]}]))
    with pytest.raises(ValueError, match=r"bad.json\[0\] \(id x7\): turn 0"):
        read_llava_json(path)


def test_max_length_that_cuts_the_image_is_an_error(tmp_path, run):
    from transformers import AutoTokenizer

    write_llava_data(tmp_path)
    tok = AutoTokenizer.from_pretrained(llm_source(run))
    ds = LlavaDataset(
        read_llava_json(tmp_path / "pretrain.json"),
        tmp_path / "images",
        tok,
        get_template("plain"),
        lambda ims: torch.zeros(1, 3, 56, 56),
        image_tokens=16,
        max_length=10,
    )
    with pytest.raises(ValueError, match="sample cap0: max_length 10 cuts off the image"):
        ds[0]


# ---- DeepSpeed --------------------------------------------------------------------------------
def test_deepspeed_auto_values_are_filled_like_the_hf_integration():
    raw = read_deepspeed_config(REPO_ROOT / "resources/deepspeed/zero3.json")
    filled = fill_deepspeed_config(
        raw, micro_batch=16, accumulation=1, world=8, max_grad_norm=1.0, bf16=True, hidden_size=4096
    )
    assert filled["train_batch_size"] == 128 and filled["bf16"]["enabled"] is True
    assert filled["zero_optimization"]["reduce_bucket_size"] == 4096 * 4096
    assert filled["zero_optimization"]["stage3_param_persistence_threshold"] == 40960
    with pytest.raises(ValueError, match=r"train_batch_size=64 vs hf global_batch=128"):
        fill_deepspeed_config(
            {**raw, "train_batch_size": 64},
            micro_batch=16,
            accumulation=1,
            world=8,
            max_grad_norm=1.0,
            bf16=True,
            hidden_size=8,
        )


@pytest.fixture
def process_group():
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_deepspeed_zero2_stage1_and_zero3_stage2_on_cpu(tmp_path, process_group):
    stage = {"max_steps": 2, "save_steps": 1}
    config = setup_run(
        tmp_path,
        use_deepspeed="always",
        stage1={**stage, "deepspeed": "resources/deepspeed/zero2.json"},
        stage2={**stage, "deepspeed": "resources/deepspeed/zero3.json"},
    )
    with pytest.raises(Crash):
        train_stage(config, 1, "clip_t", tmp_path / "s1", callbacks=[crash_at(2)])
    # Resumable state without the frozen LLM: ZeRO-2 saved the projector only.
    saved = torch.load(
        next((tmp_path / "s1/checkpoints/step-00000001").glob("*model_states.pt")),
        weights_only=False,
    )["module"]
    assert saved and all(k.startswith("projector.") for k in saved)
    steps = []
    s1 = train_stage(
        config, 1, "clip_t", tmp_path / "s1", callbacks=[lambda log, model: steps.append(log.step)]
    )
    assert steps == [2] and VlmInfo.read(s1).training["deepspeed_zero_stage"] == 2
    s2 = train_stage(config, 2, "clip_t", tmp_path / "s2", stage1_dir=s1)
    assert VlmInfo.read(s2).training["deepspeed_zero_stage"] == 3
    assert all(map(lambda v: v == v, losses(s2)))  # finite
    loaded = load_vlm(s2)  # weights gathered from the ZeRO-3 partitions
    n_params = sum(p.numel() for p in loaded.model.llm.parameters())
    assert n_params > 0 and all(torch.isfinite(p).all() for p in loaded.model.llm.parameters())


# ---- CLI --------------------------------------------------------------------------------------
def test_cli_help():
    out = subprocess.run(
        [sys.executable, "-m", "vislaw.train", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0 and "--stage" in out.stdout and "--encoder" in out.stdout


def test_fusion_encoder_trains_and_answers(tmp_path):
    """A fusion's pixels are one tensor per member (own size and normalisation)."""
    config = train_config(tmp_path, stage1={"max_steps": 2})
    config["encoders"] = {
        "clip_a": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14},
        "clip_b": {"family": "clip", "tiny": True, "input_size": 28, "patch_size": 7},
        "clip_a+clip_b": {"family": "fusion", "members": ["clip_a", "clip_b"]},
    }
    config = check_config(config)
    data = Path(config["data"]["root"])
    write_tiny_llm(
        list(conversation_texts(read_llava_json(data / "pretrain.json"))), llm_source(config)
    )
    out = train_stage(config, 1, "clip_a+clip_b", tmp_path / "fusion")
    info = VlmInfo.read(out)
    assert info.projector_in == 64 and info.image_tokens == 16
    from helpers.llava_samples import draw

    answers = load_vlm(out).answer(["Describe.", "Hi."], [draw("red", "circle"), None], 2)
    assert len(answers) == 2


def test_gpu_jobs_launch_torchrun_with_the_rules_gpu_count(tmp_path):
    from vislaw.ranks import rank_program, torchrun_command
    from vislaw.train.launch import stage_call

    command = torchrun_command(rank_program(tmp_path / "call.json"), 8)
    assert command[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert command[5:] == ["-m", "vislaw.ranks", str(tmp_path / "call.json")]
    argv = stage_call(tmp_path / "c.yaml", 2, "clip336", tmp_path / "s2", "s1dir")["argv"]
    assert argv[argv.index("--stage") + 1] == "2"
    assert argv[argv.index("--stage1") + 1] == "s1dir"


def test_a_template_the_llms_end_token_contradicts_is_refused_before_training(run, tmp_path):
    """Issue 22: vicuna_v1's "</s>" on a Llama-3-style tokenizer (end of turn <|eot_id|>) would
    train the model to spell out four literal tokens; the stage stops before its first step."""
    from helpers.word_tokenizers import llama3_tokenizer
    from vislaw.vlm.random_llm import build_tiny_llama

    llm = tmp_path / "llama3"
    tokenizer = llama3_tokenizer()
    tokenizer.save_pretrained(llm)
    build_tiny_llama(tokenizer).save_pretrained(llm)  # a complete LLM: only the marker is wrong
    stage1 = {**run["train"]["stage1"], "template": "vicuna_v1"}
    config = {**run, "train": {**run["train"], "stage1": stage1}}
    with pytest.raises(ConfigError, match=r"'</s>'.*4 tokens.*EOS '<\|eot_id\|>'") as info:
        train_stage(config, 1, "clip_t", tmp_path / "s1", llm=str(llm))
    assert info.value.key == "train.stage1.template"
    assert not (tmp_path / "s1" / "loss.csv").exists()


@pytest.mark.parametrize("architecture", ["llama3", "qwen2", "qwen3"])
def test_chat_llm_twins_train_stage2_with_their_own_chat_template(tmp_path, architecture):
    """Issue 28, scope 3: Llama-3- and Qwen-style tiny twins (their model class, special tokens
    and chat template) train stage 2 under ``template: auto`` and load for evaluation with it."""
    from vislaw.train.tiny_llm import write_config_llm
    from vislaw.vlm.chat_templates import tokenize_prompt

    raw = train_config(tmp_path, stage1={"max_steps": 2}, stage2={"max_steps": 3})
    raw["train"]["stage2"]["template"] = "auto"
    raw["llm"] = {"tiny": {"architecture": architecture}}
    config = check_config(raw)
    write_config_llm(config)  # the tiny_llm rule's call: llm.tiny.architecture picks the twin
    s1 = train_stage(config, 1, "clip_t", tmp_path / "s1")
    s2 = train_stage(config, 2, "clip_t", tmp_path / "s2", stage1_dir=s1)
    assert VlmInfo.read(s2).template == "auto"
    values = losses(s2)
    assert len(values) == 3 and all(v == v and v > 0 for v in values)
    before, after = load_vlm(s1), load_vlm(s2)
    prefix = {"llama3": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}[architecture]
    assert type(after.model.llm).__name__ == f"{prefix}ForCausalLM"
    w0, w1 = before.model.llm.state_dict(), after.model.llm.state_dict()
    assert any(not torch.equal(w0[k], w1[k]) for k in w0)
    tok = after.tokenizer
    assert after.template.stop == ("<|eot_id|>" if architecture == "llama3" else "<|im_end|>")
    prompt = tokenize_prompt(after.template, "Describe.", tok, has_image=True)
    expected = tok.apply_chat_template(
        [{"role": "user", "content": "<image>\nDescribe."}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,  # vislaw answers without thinking (Qwen3: an empty think block)
    )
    assert tok.decode([t for t in prompt if t >= 0]) == expected.replace("<image>", "")
    from PIL import Image

    answers = after.answer(["Describe.", "Hi."], [Image.new("RGB", (56, 56), "red"), None], 3)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_an_unknown_tiny_architecture_names_the_key(tmp_path):
    from vislaw.train.tiny_llm import write_config_llm

    raw = train_config(tmp_path)
    raw["llm"] = {"tiny": {"architecture": "gpt2"}}
    with pytest.raises(ConfigError, match=r"unknown architecture 'gpt2'.*llama3") as info:
        write_config_llm(check_config(raw))
    assert info.value.key == "llm.tiny.architecture"

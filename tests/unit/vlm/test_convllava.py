"""ConvLLaVA: token counts of the fifth stage, which parameters train in each of its three
training stages (checked by running steps and comparing weights), the trained encoder's round
trip through the stage folders, and that the LLaVA recipe keeps the encoder frozen."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers.llava_samples import draw, train_config
from helpers.paths import ROOT
from vislaw.config import ConfigError, check_config
from vislaw.data.llava import conversation_texts, read_llava_json
from vislaw.encoders.registry import build_encoder, family_class, token_grid
from vislaw.io.hdf5 import read_features
from vislaw.pipeline import load_checked_config
from vislaw.train.recipes import phase_settings, recipe_for, stage_phases
from vislaw.train.runner import train_stage
from vislaw.train.settings import llm_source
from vislaw.vlm.checkpoints import ENCODER_FILE, VlmInfo
from vislaw.vlm.inference import load_vlm
from vislaw.vlm.random_llm import write_tiny_llm

CONV = {"family": "convnext", "tiny": True, "input_size": 128, "fifth_stage": True}  # 2x2x128
STEPS = {"max_steps": 2, "warmup_ratio": 0.0}  # warmup 0: the first step already moves weights


def convllava_config(tmp: Path, **train) -> dict:
    """clip_t (llava), conv_t (convllava) and conv_l (the same ConvNeXt, llava recipe)."""
    train = {
        "recipes": {"conv_t": "convllava"},
        "convllava": {
            "unfreeze_from_stage": 2,
            "init": {"lr": 1e-2, **STEPS},
            "pretrain": {"lr": 1e-3, **STEPS},
        },
        "stage1": {"lr": 1e-2, **STEPS},
        "stage2": {"lr": 1e-3, **STEPS},
        **train,
    }
    config = train_config(tmp, **copy.deepcopy(train))  # merges stage1/stage2 into its own
    config["encoders"].update({"conv_t": dict(CONV), "conv_l": dict(CONV)})
    return check_config(config)


def write_llm(config: dict) -> None:
    data = Path(config["data"]["root"])
    texts = [
        *conversation_texts(read_llava_json(data / "pretrain.json")),
        *conversation_texts(read_llava_json(data / "instruct.json")),
    ]
    write_tiny_llm(texts, llm_source(config), seed=0)


def part(name: str) -> str:
    """The group a parameter of the model belongs to: projector, llm, or an encoder part
    (embeddings, stage0..stage4, layernorm)."""
    top, rest = name.split(".", 1)
    if top != "encoder":
        return top
    pieces = rest.split(".")
    if pieces[0] == "encoder" and pieces[1] == "stages":
        return f"stage{pieces[2]}"
    return pieces[0]


class Recorder:
    """A step callback keeping, per phase, every parameter after each step and which train."""

    def __init__(self) -> None:
        self.weights: dict[str, list[dict[str, torch.Tensor]]] = defaultdict(list)
        self.trainable: dict[str, set[str]] = {}

    def __call__(self, log, model) -> None:
        named = {
            **{f"encoder.{n}": p for n, p in model.encoder.model.named_parameters()},
            **{f"projector.{n}": p for n, p in model.projector.named_parameters()},
            **{f"llm.{n}": p for n, p in model.llm.named_parameters()},
        }
        self.weights[log.phase].append({n: p.detach().clone() for n, p in named.items()})
        self.trainable[log.phase] = {n for n, p in named.items() if p.requires_grad}

    def changed(self, phase: str) -> tuple[set[str], set[str]]:
        """(groups with a tensor changed, groups entirely unchanged) between the phase's two
        steps: what the second optimizer step actually moved."""
        first, second = self.weights[phase][0], self.weights[phase][-1]
        moved = {n for n in first if not torch.equal(first[n], second[n])}
        groups = {part(n) for n in first}
        return {part(n) for n in moved}, groups - {part(n) for n in moved}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """ConvLLaVA's three stages for conv_t: rule stage1 (init + pretrain), then rule stage2."""
    tmp = tmp_path_factory.mktemp("convllava")
    config = convllava_config(tmp)
    write_llm(config)
    recorder = Recorder()
    s1 = train_stage(config, 1, "conv_t", tmp / "stage1", callbacks=[recorder])
    s2 = train_stage(config, 2, "conv_t", tmp / "stage2", stage1_dir=s1, callbacks=[recorder])
    return {"config": config, "tmp": tmp, "s1": s1, "s2": s2, "rec": recorder}


# ---- token counts -----------------------------------------------------------------------------
def test_fifth_stage_token_counts_per_resolution():
    config, specs = load_checked_config(ROOT / "config.yaml")
    for name, side in {"convllava_768": 12, "convllava_1024": 16, "convllava_1536": 24}.items():
        spec = specs[name]
        assert spec.fifth_stage and spec.model_id == "ConvLLaVA/LAION-CLIP-ConvNeXt-Large-512"
        assert token_grid(spec) == (side, side)  # 144 / 256 / 576 tokens
        assert family_class(spec.family).stage_count(spec) == 5
        assert recipe_for(config, name) == "convllava"
    assert recipe_for(config, "clip336") == "llava"  # the paper's encoders keep LLaVA's recipe

    config, specs = load_checked_config(ROOT / "config/demo.yaml")
    for name, side in {"convllava_768": 8, "convllava_1024": 12, "convllava_1536": 16}.items():
        spec = specs[name]
        assert token_grid(spec) == (side, side) and recipe_for(config, name) == "convllava"
        assert spec.input_size == 32 * side and spec.patch_size == 2  # stride 2 x 2^4
        feats = build_encoder(spec).encode_images([draw("red", "circle")])
        assert feats.shape == (1, side * side, 128)  # fifth stage: 64 -> 128 channels
    for fusion in (s for s in specs.values() if s.family == "fusion"):
        assert not {m.name for m in fusion.members} & {"convllava_768", "convllava_1024"}


# ---- which parameters train -------------------------------------------------------------------
ENCODER_PARTS = {"embeddings", "stage0", "stage1", "stage2", "stage3", "stage4", "layernorm"}


def test_convllava_stage1_trains_the_fifth_stage_and_projector(trained):
    rec = trained["rec"]
    assert len(rec.weights["convllava.init"]) == 2
    assert {part(n) for n in rec.trainable["convllava.init"]} == {"stage4", "projector"}
    changed, unchanged = rec.changed("convllava.init")
    assert changed == {"stage4", "projector"}
    assert unchanged == ENCODER_PARTS - {"stage4"} | {"llm"}


def test_convllava_stage2_also_trains_encoder_stages_from_the_configured_index(trained):
    rec = trained["rec"]
    trainable = {part(n) for n in rec.trainable["convllava.pretrain"]}
    assert trainable == {"stage2", "stage3", "stage4", "projector", "llm"}
    changed, unchanged = rec.changed("convllava.pretrain")
    assert changed == trainable
    assert unchanged == {"embeddings", "stage0", "stage1", "layernorm"}
    # It starts where stage 1 ended: the fifth stage as init trained it.
    end_init, start = rec.weights["convllava.init"][-1], rec.weights["convllava.pretrain"][0]
    stage4 = [n for n in end_init if part(n) == "stage4"]
    assert all(not torch.equal(end_init[n], start[n]) for n in stage4)  # moved by its step 1
    frozen = [n for n in end_init if part(n) in {"embeddings", "stage0", "stage1"}]
    assert all(torch.equal(end_init[n], start[n]) for n in frozen)


def test_convllava_stage3_is_instruction_tuning_with_the_trained_encoder_frozen(trained):
    rec = trained["rec"]
    assert {part(n) for n in rec.trainable["convllava.stage2"]} == {"projector", "llm"}
    changed, unchanged = rec.changed("convllava.stage2")
    assert changed == {"projector", "llm"} and unchanged == ENCODER_PARTS
    # The encoder it uses is the one stage 1 trained, not the spec's.
    end_pretrain, used = rec.weights["convllava.pretrain"][-1], rec.weights["convllava.stage2"][0]
    encoder = [n for n in used if n.startswith("encoder.")]
    assert all(torch.equal(end_pretrain[n], used[n]) for n in encoder)


def test_llava_recipe_keeps_the_same_encoder_frozen(trained, tmp_path):
    rec = Recorder()
    out = train_stage(trained["config"], 1, "conv_l", tmp_path / "s1", callbacks=[rec])
    assert {part(n) for n in rec.trainable["llava.stage1"]} == {"projector"}
    changed, unchanged = rec.changed("llava.stage1")
    assert changed == {"projector"} and unchanged == ENCODER_PARTS | {"llm"}
    fresh = build_encoder(resolve(trained["config"], "conv_l")).model.state_dict()
    after = rec.weights["llava.stage1"][-1]
    assert all(torch.equal(fresh[n], after[f"encoder.{n}"]) for n in fresh if "." in n)
    info = VlmInfo.read(out)
    assert info.encoder_weights is None and not (out / ENCODER_FILE).exists()
    assert info.training["trainable"]["encoder"] == 0 and info.training["recipe"] == "llava"


def test_pretrain_without_train_llm_keeps_the_llm_frozen(tmp_path):
    config = convllava_config(
        tmp_path,
        convllava={"init": {**STEPS}, "pretrain": {"lr": 1e-3, "train_llm": False, **STEPS}},
    )
    write_llm(config)
    rec = Recorder()
    out = train_stage(config, 1, "conv_t", tmp_path / "s1", callbacks=[rec])
    changed, unchanged = rec.changed("convllava.pretrain")
    assert changed == {"stage2", "stage3", "stage4", "projector"} and "llm" in unchanged
    info = VlmInfo.read(out)
    assert not (out / "llm").exists() and info.llm != "llm"
    assert Path(info.llm_source(out)) == Path(llm_source(config)).resolve()


# ---- the trained encoder in the stage folders -------------------------------------------------
def resolve(config: dict, name: str):
    return load_checked_config(config)[1][name]


def test_trained_encoder_round_trips_through_the_stage_folders(trained, tmp_path):
    s1, s2, rec = trained["s1"], trained["s2"], trained["rec"]
    spec = resolve(trained["config"], "conv_t")
    init = load_file(str(s1 / "init" / ENCODER_FILE))
    assert {part(f"encoder.{k}") for k in init} == {"stage4"}  # ConvLLaVA stage 1's tensors
    saved = load_file(str(s1 / ENCODER_FILE))
    assert {part(f"encoder.{k}") for k in saved} == {"stage2", "stage3", "stage4"}
    end = rec.weights["convllava.pretrain"][-1]
    assert all(torch.equal(v, end[f"encoder.{k}"]) for k, v in saved.items())
    carried = load_file(str(s2 / ENCODER_FILE))  # stage 2 keeps stage 1's trained tensors
    assert carried.keys() == saved.keys() and all(torch.equal(carried[k], saved[k]) for k in saved)

    fresh = build_encoder(spec).model.state_dict()
    image = draw("blue", "square")
    for folder in (s1, s2):
        info = VlmInfo.read(folder)
        assert info.encoder_weights == ENCODER_FILE
        vlm = load_vlm(folder)
        state = vlm.model.encoder.model.state_dict()
        assert all(torch.equal(state[k], v) for k, v in saved.items())
        assert all(torch.equal(state[k], v) for k, v in fresh.items() if k not in saved)
        assert not all(torch.equal(state[k], fresh[k]) for k in saved)
    # Stage 1 trained the LLM (train_llm) and stage 2 continued from that LLM.
    assert VlmInfo.read(s1).llm == "llm" and VlmInfo.read(s1).llm_local
    counted = VlmInfo.read(s1).training["trainable"]["encoder"]
    assert counted == sum(v.numel() for v in saved.values())

    # Features for the C score come from the same trained encoder.
    from vislaw.features import extract_features

    images = tmp_path / "images"
    images.mkdir()
    image.save(images / "a.png")
    out = tmp_path / "f.h5"
    extract_features(spec, images, ["a.png"], out, dtype="float32", trained=saved)
    feats = read_features(out).features
    expected = load_vlm(s1).model.encoder.encode_images([image])
    assert torch.allclose(torch.as_tensor(feats), expected, atol=1e-5)
    untrained = tmp_path / "u.h5"
    extract_features(spec, images, ["a.png"], untrained, dtype="float32")
    assert not torch.allclose(torch.as_tensor(read_features(untrained).features), expected)


def test_restarted_stage1_skips_the_finished_init_and_reproduces(trained):
    copy_dir = trained["tmp"] / "stage1_again"  # beside it: the LLM reference is relative
    shutil.copytree(trained["s1"], copy_dir)
    (copy_dir / "vlm.json").unlink()  # as Snakemake would before rerunning the job
    steps = []
    train_stage(
        trained["config"], 1, "conv_t", copy_dir, callbacks=[lambda log, m: steps.append(log.phase)]
    )
    assert steps == ["convllava.pretrain"] * 2
    a, b = load_file(str(trained["s1"] / ENCODER_FILE)), load_file(str(copy_dir / ENCODER_FILE))
    assert all(torch.equal(a[k], b[k]) for k in a)


# ---- config checks and the phase plan -----------------------------------------------------------
def test_phases_and_their_settings(trained):
    config = trained["config"]
    init, pretrain = stage_phases(config, 1, "conv_t")
    assert (init.name, init.encoder_from_stage, init.train_llm, init.subdir) == (
        "init",
        -1,
        False,
        "init",
    )
    assert (pretrain.name, pretrain.encoder_from_stage, pretrain.train_llm) == (
        "pretrain",
        2,
        True,
    )
    (stage3,) = stage_phases(config, 2, "conv_t")
    assert stage3.encoder_from_stage is None and stage3.train_llm
    assert [p.label for p in stage_phases(config, 1, "clip_t")] == ["llava.stage1"]
    settings = phase_settings(config, init)
    assert settings.lr == 1e-2 and settings.template == "plain"
    assert settings.key("lr") == "train.convllava.init.lr"
    assert settings.key("global_batch") == "train.stage1.global_batch"  # inherited


def test_phase_error_names_the_phase_key(trained, tmp_path):
    config = copy.deepcopy(trained["config"])
    config["train"]["convllava"]["init"]["global_batch"] = 64
    with pytest.raises(ConfigError, match=r"train\.convllava\.init\.global_batch"):
        train_stage(config, 1, "conv_t", tmp_path / "s1")


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda c: c["train"]["recipes"].update(clip_t="convllava"), "train.recipes.clip_t"),
        (lambda c: c["train"]["recipes"].update(nope="convllava"), "train.recipes.nope"),
        (lambda c: c["train"].update(recipe="convllava"), "train.recipe"),
        (lambda c: c["encoders"]["conv_t"].update(fifth_stage=False), "train.recipes.conv_t"),
        (
            lambda c: c["train"]["convllava"].update(unfreeze_from_stage=5),
            "train.convllava.unfreeze_from_stage",
        ),
        (
            lambda c: c["encoders"].update(
                {"conv_l+conv_t": {"family": "fusion", "members": ["conv_l", "conv_t"]}}
            ),
            "encoders.conv_l+conv_t.members",
        ),
    ],
)
def test_recipes_an_encoder_cannot_follow_name_the_key(trained, change, key):
    config = copy.deepcopy(trained["config"])
    change(config)
    with pytest.raises(ConfigError) as err:
        load_checked_config(config)
    assert err.value.key == key


# ---- DeepSpeed ----------------------------------------------------------------------------------
DEEPSPEED_SCRIPT = """
import json, sys
import torch
from vislaw.train.runner import train_stage

class Crash(RuntimeError):
    pass

def crash(log, model):
    if log.phase == "convllava.pretrain" and log.step == 2:
        raise Crash

config, out = json.loads(open(sys.argv[1]).read()), sys.argv[2]
try:
    train_stage(config, 1, "conv_t", out, callbacks=[crash])
except Crash:
    pass
state = next(__import__("pathlib").Path(out, "checkpoints/step-00000001").glob("*model_states.pt"))
keys = list(torch.load(state, weights_only=False)["module"])
steps = []
train_stage(config, 1, "conv_t", out, callbacks=[lambda log, m: steps.append(log.step)])
print(json.dumps({"keys": keys, "steps": steps}))
"""


@pytest.mark.slow
def test_convllava_stage1_under_deepspeed_zero2_resumes(tmp_path):
    """In a subprocess: DeepSpeed keeps process-group state that outlives one test."""
    zero2 = {"deepspeed": "resources/deepspeed/zero2.json", "save_steps": 1}
    config = convllava_config(
        tmp_path,
        use_deepspeed="always",
        convllava={"init": {**STEPS, **zero2}, "pretrain": {"lr": 1e-3, **STEPS, **zero2}},
    )
    write_llm(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            DEEPSPEED_SCRIPT,
            str(tmp_path / "config.json"),
            str(tmp_path / "s1"),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # ZeRO-2's resumable state holds the trained encoder stages, not the frozen ones.
    assert any(k.startswith("vision_tower.encoder.stages.2.") for k in result["keys"])
    assert not any(k.startswith("vision_tower.encoder.stages.1.") for k in result["keys"])
    assert result["steps"] == [2]  # init was done; pretrain resumed after its step 1
    info = VlmInfo.read(tmp_path / "s1")
    assert info.training["deepspeed_zero_stage"] == 2 and info.encoder_weights == ENCODER_FILE
    assert load_vlm(tmp_path / "s1").model.encoder.channels == 128


def test_encoder_gradient_checkpointing_gives_the_same_gradients(trained):
    from transformers import AutoModelForCausalLM

    from vislaw.vlm.model import LlavaStyleModel
    from vislaw.vlm.projector import build_projector

    spec = resolve(trained["config"], "conv_t")
    pixels = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    grads = []
    for checkpointing in (False, True):
        encoder = build_encoder(spec)
        encoder.stage_modules()[2].requires_grad_(True)
        if checkpointing:  # through the model's switch, as the runner does
            llm = AutoModelForCausalLM.from_pretrained(llm_source(trained["config"]))
            projector = build_projector("linear", encoder.channels, llm.config.hidden_size)
            model = LlavaStyleModel(encoder, projector, llm, train_encoder=True)
            model.enable_gradient_checkpointing()
            assert all(layer._vislaw_checkpointed for layer in encoder.stage_modules()[2].layers)
        encoder.forward_features(pixels).square().sum().backward()
        grads.append({n: p.grad for n, p in encoder.model.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-6) for k in grads[0])

"""What vislaw refuses before any job runs (issue 16; docs/refuses.md): names that are paths,
duplicate keys and unknown rule names on the Snakemake path, yte configs, and semantic errors
the schema cannot see. Every case asserts the key the message names; the Snakemake cases also
assert that no job ran (nothing was written under the run's folder)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers.paths import ROOT
from helpers.run import isolate, run_snakemake
from helpers.run import with_key as _with
from vislaw.config import ConfigError, check_cli_config, cli_config_entries
from vislaw.pipeline import load_checked_config

pytestmark = pytest.mark.slow  # one Snakemake dry run per refused config

BIN = Path(sys.executable).parent

SD = {"family": "sd_unet", "tiny": True, "input_size": 64}
CONV = {"family": "convnext", "tiny": True, "input_size": 128, "fifth_stage": True}


# (id, dotted path to change (| separates keys that hold dots), new value, key named)
BAD = [
    # 1. a name that is a path
    (
        "encoder dotdot",
        "encoders|..",
        {"family": "clip", "tiny": True, "input_size": 56},
        "encoders",
    ),
    ("encoder dot", "encoders|.", {"family": "clip", "tiny": True, "input_size": 56}, "encoders"),
    ("encoder dash", "encoders|-x", {"family": "clip", "tiny": True, "input_size": 56}, "encoders"),
    (
        "encoder hidden",
        "encoders|.x",
        {"family": "clip", "tiny": True, "input_size": 56},
        "encoders",
    ),
    (
        "encoder slash",
        "encoders|a/b",
        {"family": "clip", "tiny": True, "input_size": 56},
        "encoders",
    ),
    ("encoder empty", "encoders|", {"family": "clip", "tiny": True, "input_size": 56}, "encoders"),
    ("run dotdot", "run", "..", "run"),
    ("run dash", "run", "-rf", "run"),
    ("run empty", "run", "", "run"),
    ("run not a string", "run", 7, "run"),
    (
        "fusion member dotdot",
        "encoders.f",
        {"family": "fusion", "members": ["clip224", ".."]},
        "encoders.f.members.1",
    ),
    (
        "spair category",
        "data.synthetic",
        {"spair_categories": ["../etc"]},
        "data.synthetic.spair_categories.0",
    ),
    ("lmvr encoder", "lmvr.encoders", [".."], "lmvr.encoders.0"),
    ("recipe encoder", "train.recipes", {"../x": "llava"}, "train.recipes"),
    ("a-score suffix", "a_score.references", {"../224": "clip224"}, "a_score.references"),
    ("a-score reference", "a_score.references", {"224": "../clip"}, "a_score.references.224"),
    ("eval task", "eval.tasks", {"mme": "../../x"}, "eval.tasks.mme"),
    # 3. non-finite numbers anywhere
    ("lr inf", "train.stage1.lr", math.inf, "train.stage1.lr"),
    ("lr nan", "train.stage2.lr", math.nan, "train.stage2.lr"),
    ("phase lr inf", "train.convllava.init.lr", math.inf, "train.convllava.init.lr"),
    ("temperature inf", "c_score.temperature", math.inf, "c_score.temperature"),
    ("confidence nan", "law.confidence", math.nan, "law.confidence"),
    ("alpha nan", "c_score.alphas", [0.1, math.nan], "c_score.alphas.1"),
    ("memory -inf", "c_score.memory_gb", -math.inf, "c_score.memory_gb"),
    # 3. grids, layers, timesteps
    (
        "input not a patch multiple",
        "encoders.clip224.input_size",
        57,
        "encoders.clip224.input_size",
    ),
    ("input below the patch", "encoders.clip224.input_size", 7, "encoders.clip224.input_size"),
    ("vit layer too deep", "encoders.clip224.layer", 4, "encoders.clip224.layer"),
    ("vit layer too negative", "encoders.clip224.layer", -5, "encoders.clip224.layer"),
    (
        "convnext input not a stride multiple",
        "encoders.conv",
        {**CONV, "input_size": 100},
        "encoders.conv.input_size",
    ),
    (
        "convnext input below the stride",
        "encoders.conv",
        {**CONV, "input_size": 32},
        "encoders.conv.input_size",
    ),
    ("timestep past the schedule", "encoders.sd", {**SD, "timestep": 1000}, "encoders.sd.timestep"),
    ("up block out of range", "encoders.sd", {**SD, "up_block": 5}, "encoders.sd.up_block"),
    # 3. batches (world size from the rule's gpus)
    (
        "per-device over global",
        "train.stage1",
        {"per_device_batch": 64, "global_batch": 8},
        "train.stage1.per_device_batch",
    ),
    (
        "global not a multiple",
        "train.stage2",
        {"per_device_batch": 4, "global_batch": 10},
        "train.stage2.global_batch",
    ),
    (
        "global not a multiple of the gpus",
        "resources.stage2",
        {"gpus": 3},
        "train.stage2.global_batch",
    ),
    ("default gpus count too", "resources.default", {"gpus": 5}, "train.stage1.global_batch"),
    # 3. LMVR layers of the (tiny) LLM: 2 layers, 3 hidden states
    ("lmvr layer too deep", "lmvr.layers", [-1, 3], "lmvr.layers.1"),
    ("lmvr layer too negative", "lmvr.layers", [-4], "lmvr.layers.0"),
    ("lmvr map layer", "lmvr.maps.layer", 9, "lmvr.maps.layer"),
    ("tiny llm overrides count", "llm.tiny", {"num_hidden_layers": 1}, "lmvr.layers.0"),
    # 8. config is code
    ("yte", "__use_yte__", True, "__use_yte__"),
]


@pytest.fixture
def base(minimal_config) -> dict:
    config = copy.deepcopy(minimal_config)
    config["llm"] = {"tiny": True}
    config["lmvr"] = {"layers": [-1, 2]}
    return config


@pytest.mark.parametrize(("what", "path", "value", "key"), BAD, ids=[c[0] for c in BAD])
def test_bad_config_is_refused_naming_the_key(base, what, path, value, key):
    bad = _with(base, path, value)
    if what == "tiny llm overrides count":
        bad["lmvr"]["layers"] = [2]
    with pytest.raises(ConfigError) as info:
        load_checked_config(bad)
    assert info.value.key == key, f"{what}: {info.value}"
    assert f"config key '{key}'" in str(info.value)


GOOD = [
    ("fusion name with plus and dots", "encoders|clip224+clip.v2", None),
    ("layer at the ends", "encoders.clip224.layer", -4),
    ("last timestep", "encoders.sd", {**SD, "timestep": 999}),
    ("gpus dividing the batch", "resources.stage2", {"gpus": 2}),
    ("lmvr embeddings layer", "lmvr.layers", [0, -3, 2]),
]


@pytest.mark.parametrize(("what", "path", "value"), GOOD, ids=[c[0] for c in GOOD])
def test_edge_values_that_are_fine_pass(base, what, path, value):
    if what.startswith("fusion"):
        base["encoders"]["clip.v2"] = dict(base["encoders"]["clip224"])
        value = {"family": "fusion", "members": ["clip224", "clip.v2"]}
    load_checked_config(_with(base, path, value))


# ---- real checkpoints: facts from their config files when available offline --------------------
def _hub_cache(root: Path, repo: str, files: dict[str, dict]) -> None:
    """The Hugging Face cache layout of ``repo`` holding just these JSON files."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0" * 40)
    for name, data in files.items():
        path = folder / "snapshots" / ("0" * 40) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data))


def test_real_ids_are_checked_from_their_cached_config(base, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    bad = _with(base, "encoders.clip_b.layer", 13)  # openai/clip-vit-base-patch16
    load_checked_config(bad)  # its config is not cached: not guessed, the job checks
    _hub_cache(
        tmp_path,
        "openai/clip-vit-base-patch16",
        {"config.json": {"model_type": "clip", "vision_config": {"num_hidden_layers": 12}}},
    )
    with pytest.raises(ConfigError) as info:
        load_checked_config(bad)
    assert info.value.key == "encoders.clip_b.layer" and "-13..12" in str(info.value)
    load_checked_config(_with(base, "encoders.clip_b.layer", -13))

    sd = {"family": "sd_unet", "model_id": "org/sd", "input_size": 512, "timestep": 50}
    _hub_cache(tmp_path, "org/sd", {"scheduler/scheduler_config.json": {"num_train_timesteps": 50}})
    with pytest.raises(ConfigError, match="0..49") as info:
        load_checked_config(_with(base, "encoders.sd", sd))
    assert info.value.key == "encoders.sd.timestep"

    llm = {"model_id": "org/llm"}
    _hub_cache(tmp_path, "org/llm", {"config.json": {"num_hidden_layers": 32}})
    load_checked_config(_with(_with(base, "llm", llm), "lmvr.layers", [-33, 32]))
    with pytest.raises(ConfigError) as info:
        load_checked_config(_with(_with(base, "llm", llm), "lmvr.layers", [33]))
    assert info.value.key == "lmvr.layers.0"


def test_a_cached_checkpoint_patch_size_and_model_type_are_checked(base, tmp_path, monkeypatch):
    """clip_b names openai/clip-vit-base-patch16 without a patch_size: the family default (14)
    would give a 16x16 grid where the checkpoint makes 14x14, found only inside the job."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    vision = {"patch_size": 16, "image_size": 224, "num_hidden_layers": 12}
    _hub_cache(
        tmp_path,
        "openai/clip-vit-base-patch16",
        {"config.json": {"model_type": "clip", "vision_config": vision}},
    )
    with pytest.raises(ConfigError, match="14 disagrees with .*patch_size: 16") as info:
        load_checked_config(base)
    assert info.value.key == "encoders.clip_b.patch_size"
    base = _with(base, "encoders.clip_b.patch_size", 16)
    load_checked_config(base)

    aimv2 = {"family": "siglip", "model_id": "apple/aimv2-x", "input_size": 224, "patch_size": 14}
    _hub_cache(
        tmp_path, "apple/aimv2-x", {"config.json": {"model_type": "aimv2", "patch_size": 14}}
    )
    with pytest.raises(
        ConfigError, match="no dedicated family handles aimv2.*use family: hf_auto"
    ) as info:
        load_checked_config(_with(base, "encoders.aim", aimv2))
    assert info.value.key == "encoders.aim.family"


def test_a_local_folder_names_the_family_that_fits_and_the_stage_count(base, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "dinov2", "patch_size": 14}))
    entry = {"family": "clip", "model_id": str(tmp_path), "input_size": 224, "patch_size": 14}
    with pytest.raises(ConfigError, match="use family: dinov2") as info:
        load_checked_config(_with(base, "encoders.dino", entry))
    assert info.value.key == "encoders.dino.family"
    load_checked_config(_with(base, "encoders.dino", {**entry, "family": "dinov2"}))

    conv = tmp_path / "conv"
    conv.mkdir()
    five = {"model_type": "convnext", "patch_size": 4, "num_stages": 5}
    (conv / "config.json").write_text(json.dumps(five))
    entry = {"family": "convnext", "model_id": str(conv), "input_size": 768, "fifth_stage": True}
    with pytest.raises(ConfigError, match="4 disagrees with .*num_stages: 5") as info:
        load_checked_config(_with(base, "encoders.conv", entry))
    assert info.value.key == "encoders.conv.fifth_stage"
    (conv / "config.json").write_text(json.dumps({**five, "num_stages": 4, "patch_size": 8}))
    with pytest.raises(ConfigError) as info:
        load_checked_config(_with(base, "encoders.conv", entry))
    assert info.value.key == "encoders.conv.patch_size"
    (conv / "config.json").write_text(json.dumps({**five, "num_stages": 4}))
    load_checked_config(_with(base, "encoders.conv", entry))


def test_a_local_model_folder_is_read_too(base, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))
    entry = {"family": "dinov2", "model_id": str(tmp_path), "input_size": 56, "layer": 3}
    with pytest.raises(ConfigError) as info:
        load_checked_config(_with(base, "encoders.dino", entry))
    assert info.value.key == "encoders.dino.layer"


# ---- --config overrides ------------------------------------------------------------------------
def test_cli_overrides_are_parsed_like_snakemake_and_duplicates_refused():
    argv = ["snakemake", "-n", "--config", "seed=1", "eval={jobs: a}", "--cores", "1"]
    assert cli_config_entries(argv) == ["seed=1", "eval={jobs: a}"]
    check_cli_config(argv)
    with pytest.raises(ConfigError) as info:
        check_cli_config(["snakemake", "--config", "seed=1", "run=x", "seed=2"])
    assert info.value.key == "seed"
    with pytest.raises(ConfigError) as info:
        check_cli_config(["snakemake", "-C", "eval={jobs: a, jobs: b}"])
    assert info.value.key == "eval.jobs"


# ---- through Snakemake: the key is named and no job ran ----------------------------------------
def _snakemake(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake("--cores", "1", "--directory", str(folder), *args, timeout=900)


def _demo_text(folder: Path) -> str:
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), folder)
    config["targets"] = ["features"]
    return yaml.safe_dump(config, sort_keys=False)


def _edit(text: str, path: str, value) -> str:
    return yaml.safe_dump(_with(yaml.safe_load(text), path, value), sort_keys=False)


ALIAS_BOMB = "lols:\n" + "".join(
    f"  - &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)
)
SNAKEMAKE_CASES = [
    # (id, how to change the demo config's text, extra command-line args, key named)
    ("duplicate top-level seed", lambda t: t + "seed: 7\n", [], "seed"),
    (
        "duplicate encoder",
        lambda t: t.replace(
            "encoders:\n", "encoders:\n  sd15: {family: sd_unet, tiny: true, input_size: 64}\n", 1
        ),
        [],
        "encoders.sd15",
    ),
    ("duplicate --config key", lambda t: t, ["--config", "seed=1", "seed=2"], "seed"),
    (
        "resources typo",
        lambda t: _edit(t, "resources.featurs", {"cpus": 2}),
        [],
        "resources.featurs",
    ),
    (
        "encoder named ..",
        lambda t: _edit(t, "encoders|..", {"family": "clip", "tiny": True, "input_size": 56}),
        [],
        "encoders",
    ),
    ("lr inf", lambda t: _edit(t, "train.stage1.lr", math.inf), [], "train.stage1.lr"),
    (
        "input not a patch multiple",
        lambda t: _edit(t, "encoders.clip224.input_size", 113),
        [],
        "encoders.clip224.input_size",
    ),
    (
        "layer out of range",
        lambda t: _edit(t, "encoders.dinov2.layer", 7),
        [],
        "encoders.dinov2.layer",
    ),
    (
        "batch over global",
        lambda t: _edit(t, "train.stage2.per_device_batch", 16),
        [],
        "train.stage2.per_device_batch",
    ),
    ("lmvr layer", lambda t: _edit(t, "lmvr.layers", [5]), [], "lmvr.layers.0"),
    ("yte", lambda t: "__use_yte__: true\n" + t, [], "__use_yte__"),
    # issue 23: refused in seconds, before any job (an alias bomb hung the check > 150 s)
    ("alias bomb", lambda t: t + ALIAS_BOMB, [], "lols.5"),
    ("seed too large", lambda t: _edit(t, "seed", 12345678901234567890123), [], "seed"),
    (
        "hf_home a file",
        lambda t: _edit(t, "cache.hf_home", str(ROOT / "Snakefile")),
        [],
        "cache.hf_home",
    ),
]
if not torch.cuda.is_available():  # the case needs a machine without CUDA
    SNAKEMAKE_CASES.append(("device cuda", lambda t: _edit(t, "device", "cuda"), [], "device"))


@pytest.mark.parametrize(
    ("what", "change", "args", "key"), SNAKEMAKE_CASES, ids=[c[0] for c in SNAKEMAKE_CASES]
)
def test_snakemake_refuses_before_any_job(tmp_path, what, change, args, key):
    path = tmp_path / "bad.yaml"
    path.write_text(change(_demo_text(tmp_path)))
    result = _snakemake(tmp_path, "--configfile", str(path), *args)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out[-3000:]
    assert f"config key '{key}'" in out, out[-3000:]
    assert not (tmp_path / "results").exists()  # no job ran: no data, no logs, no outputs


def test_the_demo_config_itself_passes(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text(_demo_text(tmp_path))
    result = _snakemake(tmp_path, "-n", "--configfile", str(path))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_default_yte_config_is_refused_before_yte_runs(tmp_path):
    """Without --configfile the Snakefile reads config.yaml of the working directory: a yte
    file is refused before Snakemake evaluates it, so its code never runs."""
    marker = tmp_path / "pwned"
    text = _demo_text(tmp_path).replace("seed: 0\n", "")
    expression = f"?__import__('pathlib').Path({str(marker)!r}).touch() or 0"
    (tmp_path / "config.yaml").write_text(f"__use_yte__: true\nseed: {expression}\n{text}")
    result = _snakemake(tmp_path, "-n", "-s", str(ROOT / "Snakefile"))
    assert result.returncode != 0
    assert "config key '__use_yte__'" in result.stdout + result.stderr
    assert not marker.exists()

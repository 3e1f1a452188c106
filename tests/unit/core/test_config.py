"""The config schema and the zoo's checks reject bad configs with a message naming the key."""

from __future__ import annotations

import textwrap

import pytest

from helpers.run import DELETE as _DELETE
from helpers.run import with_key as _with
from vislaw.config import ConfigError, check_config, load_config
from vislaw.pipeline import load_checked_config


def test_minimal_config_gets_defaults(minimal_config):
    config, specs = load_checked_config(minimal_config)
    assert config["results_dir"] == "results"
    assert config["features"]["batch_size"] == 8
    assert config["targets"] == ["features"]
    assert specs["clip224"].is_tiny and not specs["clip_b"].is_tiny
    assert specs["clip_b"].model_id == "openai/clip-vit-base-patch16"


def test_defaults_do_not_leak_between_calls(minimal_config):
    first = check_config(minimal_config)
    first["features"]["batch_size"] = 99
    assert check_config(minimal_config)["features"]["batch_size"] == 8
    assert "features" not in minimal_config


BAD_CONFIGS = [
    # (description, dotted path to change, new value, key the message must name)
    ("unknown family", "encoders.clip224.family", "vit_magic", "encoders.clip224.family"),
    ("missing model id", "encoders.clip_b.model_id", _DELETE, "encoders.clip_b"),
    ("tiny false and no model id", "encoders.clip224.tiny", False, "encoders.clip224"),
    ("negative input size", "encoders.clip224.input_size", -224, "encoders.clip224.input_size"),
    ("zero patch size", "encoders.clip224.patch_size", 0, "encoders.clip224.patch_size"),
    ("unknown benchmark", "benchmarks", ["mmbench_en", "imagenet_zero"], "benchmarks.1"),
    ("unknown top-level key", "encoder", {}, "<root>"),
    ("unknown encoder key", "encoders.clip224.layers", -2, "encoders.clip224"),
    ("bad run name", "run", "demo/../../etc", "run"),
    ("no encoders", "encoders", {}, "encoders"),
    ("members on a non-fusion", "encoders.clip224.members", ["a", "b"], "encoders.clip224"),
    (
        "fusion with a model id",
        "encoders.f",
        {"family": "fusion", "members": ["clip224", "clip_b"], "model_id": "x"},
        "encoders.f",
    ),
    ("negative memory", "resources.features", {"mem_mb": -1}, "resources.features.mem_mb"),
    ("unknown device", "device", "tpu", "device"),
    ("unknown target stage", "targets", ["features", "finetune_everything"], "targets.1"),
    ("missing data root", "data.root", _DELETE, "data"),
    ("unknown env", "encoders.clip224.env", "pytorch3", "encoders.clip224.env"),
]


@pytest.mark.parametrize(
    ("what", "path", "value", "key"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_names_the_key(minimal_config, what, path, value, key):
    bad = _with(minimal_config, path, value)
    with pytest.raises(ConfigError) as info:
        load_checked_config(bad)
    assert info.value.key == key, f"{what}: {info.value}"
    assert f"'{key}'" in str(info.value)


def test_fusion_of_different_grids_is_refused(minimal_config):
    # clip224 twin: 56/14 = 4x4 tokens; clip_b: 224/14 = 16x16 tokens.
    bad = _with(
        minimal_config,
        "encoders.clip224+clip_b",
        {"family": "fusion", "members": ["clip224", "clip_b"]},
    )
    with pytest.raises(ConfigError, match="token grids differ") as info:
        load_checked_config(bad)
    assert info.value.key == "encoders.clip224+clip_b.members"


def test_fusion_member_must_exist(minimal_config):
    bad = _with(minimal_config, "encoders.f", {"family": "fusion", "members": ["clip224", "nope"]})
    with pytest.raises(ConfigError, match="'nope' is not an encoder"):
        load_checked_config(bad)


def test_fusion_member_cannot_be_a_fusion(minimal_config):
    bad = _with(
        minimal_config, "encoders.f", {"family": "fusion", "members": ["clip224", "clip_b"]}
    )
    bad = _with(bad, "encoders.g", {"family": "fusion", "members": ["f", "clip224"]})
    bad["encoders"]["clip_b"]["input_size"] = 56
    with pytest.raises(ConfigError, match="itself a fusion"):
        load_checked_config(bad)


def test_matching_fusion_resolves_members(minimal_config):
    good = _with(minimal_config, "encoders.clip_b.input_size", 56)
    good = _with(
        good, "encoders.clip224+clip_b", {"family": "fusion", "members": ["clip224", "clip_b"]}
    )
    _, specs = load_checked_config(good)
    fusion = specs["clip224+clip_b"]
    assert [m.name for m in fusion.members] == ["clip224", "clip_b"]
    assert fusion.input_size == 56


def test_duplicate_encoder_names_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text(
        textwrap.dedent("""
        run: dup
        data: {root: data}
        encoders:
          clip224: {family: clip, tiny: true, input_size: 56}
          clip224: {family: clip, tiny: true, input_size: 112}
    """)
    )
    with pytest.raises(ConfigError, match="duplicate key") as info:
        load_config(path)
    assert info.value.key == "encoders.clip224"


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", ["config.yaml", "config/demo.yaml"])
def test_shipped_configs_are_valid(project_root, name):
    config, specs = load_checked_config(project_root / name)
    assert specs, name
    assert set(specs) == set(config["encoders"])


def test_encoder_spec_names_the_configured_encoders(project_root) -> None:
    from vislaw.config import ConfigError
    from vislaw.encoders.registry import encoder_spec
    from vislaw.pipeline import load_checked_config

    _, specs = load_checked_config(project_root / "config" / "demo.yaml")
    assert encoder_spec(specs, "clip224").name == "clip224"
    with pytest.raises(ConfigError, match=r"'clip999' is not in demo.yaml \(\['clip224'"):
        encoder_spec(specs, "clip999", "demo.yaml")


@pytest.mark.slow
def test_jobs_pin_lmms_eval_datasets_cache_to_the_prepared_one(tmp_path):
    """lmms-eval 0.7.3 resolves its datasets cache from LMMS_EVAL_DATASETS_CACHE first and, on a
    network file system without it, moves to node-local scratch that `prepare` never filled.
    Checked in a fresh interpreter with the job's environment, as a job runs."""
    import os
    import subprocess
    import sys

    from vislaw.jobs import runtime_environment

    env = runtime_environment({"cache": {"hf_home": str(tmp_path / "hf")}})
    prepared = str((tmp_path / "hf" / "datasets").resolve())
    assert env["LMMS_EVAL_DATASETS_CACHE"] == prepared
    code = "from lmms_eval.api.task import _resolve_hf_datasets_cache_dir as r; print(r())"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == prepared


_ONLINE_PROBE = """
import json, os, sys
from vislaw.jobs import OFFLINE_VARS, go_online, run_environment
os.environ.update(run_environment({"cache": {"hf_home": sys.argv[1]}}))  # as rules/warm.smk
before = {name: os.environ.get(name) for name in OFFLINE_VARS}
go_online()  # as a prepare job
from huggingface_hub import constants
after = {name: os.environ.get(name) for name in OFFLINE_VARS}
print(json.dumps({"before": before, "after": after, "hub_offline": constants.HF_HUB_OFFLINE}))
"""


@pytest.mark.parametrize("user_offline", [None, "0", "1"])
def test_prepare_clears_only_the_offline_switches_the_run_set(tmp_path, user_offline):
    """A warm-start run sets the offline switches for every job and a prepare job clears them,
    so `snakemake prepare` downloads; a user's own HF_HUB_OFFLINE=1 (checking a copied cache
    with no network) survives. A fresh interpreter, as a job runs."""
    import json
    import os
    import subprocess
    import sys

    from vislaw.jobs import OFFLINE_VARS

    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS}
    if user_offline is not None:  # the user's shell: unset, turned off, turned on
        env["HF_HUB_OFFLINE"] = user_offline
    result = subprocess.run(
        [sys.executable, "-c", _ONLINE_PROBE, str(tmp_path / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["before"] == dict.fromkeys(OFFLINE_VARS, "1")
    kept = {"HF_HUB_OFFLINE": "1"} if user_offline == "1" else {}
    assert seen["after"] == {name: kept.get(name) for name in OFFLINE_VARS}
    assert seen["hub_offline"] is (user_offline == "1")


def test_an_offline_prepare_names_the_repo_missing_from_the_cache(tmp_path):
    """HF_HUB_OFFLINE=1 prepare over an empty cache: no network, a message naming the config
    key, the repo and what to do (huggingface_hub's LocalEntryNotFoundError)."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from vislaw.prepare.hub import HubRepo, PrepareError, prepare_repo\n"
        "repo = HubRepo('openai/clip-vit-large-patch14', 'model', ('*.json',), "
        "'encoders.clip224.model_id')\n"
        "try:\n"
        "    prepare_repo(sys.argv[1], repo)\n"
        "except PrepareError as err:\n"
        "    print(err)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "hf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    message = result.stdout.strip()
    assert message.startswith("encoders.clip224.model_id: openai/clip-vit-large-patch14")
    assert "not in the cache" in message and "run prepare on a machine with internet" in message
    assert not list((tmp_path / "hf").glob("vislaw-prepared/*.json"))

"""Configs that used to hang or fail late (issue 23, scope 5): a YAML alias bomb or a deep
nest, a seed numpy/torch cannot take, a folder key naming a file, ``device: cuda`` without
CUDA; and every ``python -m vislaw.*`` CLI reports a bad config as ``config key ...`` with
exit code 2, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import with_key as _with
from vislaw.config import (
    MAX_YAML_DEPTH,
    ConfigError,
    check_cli_config,
    load_config,
    read_yaml,
)
from vislaw.host import check_device, pick_device
from vislaw.pipeline import load_checked_config

BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
"""


def _write(tmp_path: Path, config: dict, extra: str = "") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False) + extra)
    return path


def test_alias_bomb_is_refused_at_once_naming_the_key(tmp_path, minimal_config):
    path = _write(tmp_path, minimal_config, BOMB)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="alias bomb") as info:
        load_config(path)  # the old loader read it, then the schema check ran for > 150 s
    assert time.perf_counter() - started < 1.0
    assert info.value.key == "f"  # 9**6 values: the first key past the limit
    assert str(path) in str(info.value)


def test_aliases_of_a_normal_size_still_work(tmp_path, minimal_config):
    extra = "resources:\n  default: &r {cpus: 2}\n  features: *r\n"
    config = load_config(_write(tmp_path, minimal_config, extra))
    assert config["resources"]["features"] == {"cpus": 2}


@pytest.mark.parametrize(
    "text",
    [
        "run: x\nnest: " + "[" * (MAX_YAML_DEPTH + 5) + "]" * (MAX_YAML_DEPTH + 5) + "\n",
        "run: x\nnest: " + "[" * 200_000 + "]" * 200_000 + "\n",
        "run: x\nloop: &a [1, *a]\n",  # a recursive alias: infinitely deep
    ],
    ids=["deeper than the limit", "200000 deep", "recursive alias"],
)
def test_deep_or_recursive_yaml_is_refused_naming_the_file(tmp_path, text):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="too deeply|deeper than|nesting depth") as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_alias_bomb_on_the_command_line_is_refused():
    check_cli_config(["snakemake", "--config", "eval={a: &x [1], b: *x}"])  # a normal alias
    nested = "[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
    nested += "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
    nested += "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d], [*e,*e,*e,*e,*e,*e,*e,*e,*e]]"
    with pytest.raises(ConfigError, match="alias bomb") as info:
        check_cli_config(["snakemake", "--config", f"eval={nested}"])
    assert info.value.key.startswith("eval")


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        ("seed", 12345678901234567890123, "seed"),
        ("seed", 2**32, "seed"),
        ("lmvr.probe.seed", 2**40, "lmvr.probe.seed"),
    ],
)
def test_seed_outside_numpy_range_is_refused(minimal_config, path, value, key):
    with pytest.raises(ConfigError, match="maximum") as info:
        load_checked_config(_with(minimal_config, path, value))
    assert info.value.key == key


def test_largest_seed_numpy_takes_passes(minimal_config):
    import numpy as np

    config, _ = load_checked_config(_with(minimal_config, "seed", 2**32 - 1))
    np.random.default_rng(config["seed"])
    np.random.RandomState(config["seed"])


@pytest.mark.parametrize(
    ("key", "relative"),
    [
        ("cache.hf_home", "afile"),
        ("cache.hf_home", "afile/hub"),
        ("results_dir", "afile/results"),
        ("data.root", "afile"),
    ],
)
def test_folder_key_naming_a_file_is_refused(tmp_path, minimal_config, key, relative):
    (tmp_path / "afile").write_text("not a folder\n")
    with pytest.raises(ConfigError, match="must be a folder") as info:
        load_checked_config(_with(minimal_config, key, str(tmp_path / relative)))
    assert info.value.key == key


def test_folder_keys_that_do_not_exist_yet_pass(tmp_path, minimal_config):
    config = _with(minimal_config, "cache.hf_home", str(tmp_path / "new" / "hf"))
    load_checked_config(_with(config, "results_dir", str(tmp_path / "results")))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA: device: cuda is fine here")
def test_device_cuda_without_cuda_is_refused_naming_the_key(minimal_config):
    config, _ = load_checked_config(_with(minimal_config, "device", "cuda"))
    with pytest.raises(ConfigError, match="no usable CUDA") as info:
        check_device(config)
    assert info.value.key == "device"
    with pytest.raises(ConfigError, match="no usable CUDA"):
        pick_device(config)  # a job's own check: the key, not a CUDA traceback mid-run
    assert pick_device(_with(config, "device", "auto")) == "cpu"


# ---- every CLI: one line naming the key, exit code 2 -------------------------------------------
CLIS = [
    ["vislaw.prepare", "status"],
    ["vislaw.data.check", "--dataset", "spair"],
    ["vislaw.features", "--encoder", "clip224", "--out", "x.h5"],
    ["vislaw.train", "--stage", "1", "--encoder", "clip224", "--out", "s1"],
    [
        "vislaw.vlm",
        "import-llava",
        "--stage",
        "1",
        "--src",
        "p.bin",
        "--encoder",
        "clip224",
        "--out",
        "s1",
    ],
    ["vislaw.cost"],
    ["vislaw.lmvr", "probe"],
    ["vislaw.data.synthetic"],
    ["vislaw.train.tiny_llm"],
    ["vislaw.studies.protocol_effects"],
]


@pytest.mark.parametrize("cli", CLIS, ids=[c[0] + " " + c[1] if len(c) > 1 else c[0] for c in CLIS])
def test_cli_reports_a_bad_config_without_a_traceback(tmp_path, minimal_config, cli):
    path = _write(tmp_path, _with(minimal_config, "seed", 12345678901234567890123))
    module, *args = cli
    before = args[:1] if module in ("vislaw.prepare", "vislaw.vlm", "vislaw.lmvr") else []
    after = args[len(before) :]
    result = subprocess.run(
        [sys.executable, "-m", module, *before, "--config", str(path), *after],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=240,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config key 'seed'" in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def test_cli_names_a_missing_config_file(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vislaw.data.check", "--config", "nope.yaml", "--dataset", "spair"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "config file not found: nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_nested_number_given_as_a_string_points_at_an_overlay(minimal_config):
    """What Snakemake's ``--config 'train={stage1: {lr: 2e-3}}'`` hands over."""
    with pytest.raises(ConfigError, match="overlay") as info:
        load_checked_config(_with(minimal_config, "train.stage1.lr", "2e-3"))
    assert info.value.key == "train.stage1.lr"
    with pytest.raises(ConfigError) as info:  # a word is not a number: no such hint
        load_checked_config(_with(minimal_config, "train.stage1.lr", "fast"))
    assert "overlay" not in str(info.value)


def test_readme_shows_the_overlay_and_the_unlock():
    readme = (ROOT / "README.md").read_text()
    assert "--configfile config.yaml overlay.yaml" in readme
    assert "--configfile config.yaml --unlock" in readme

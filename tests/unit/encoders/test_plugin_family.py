"""A family from another package: registered under the ``vislaw.encoders`` entry points.

The example package is installed the way pip installs one (a package folder plus a
``*.dist-info`` with ``entry_points.txt``) into a temporary folder put on the path; vislaw finds
it through ``importlib.metadata`` alone, and Snakemake's jobs find it through PYTHONPATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.paths import ROOT
from helpers.plugin_family import install_example
from helpers.run import isolate, run_snakemake
from vislaw.config import ConfigError
from vislaw.encoders import registry
from vislaw.encoders.base import EncoderSpec


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """The example installed on sys.path; FAMILIES restored afterwards."""
    site = tmp_path / "site"
    install_example(site)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    yield site
    sys.modules.pop("vislaw_example_family", None)


def test_registry_finds_the_family_only_through_its_entry_point(plugin_site):
    assert "example_patches" not in registry.FAMILIES  # not loaded at import: stays cheap
    cls = registry.family_class("example_patches")
    assert cls.__module__ == "vislaw_example_family"
    spec = EncoderSpec("ex", "example_patches", 64, tiny={}, patch_size=16)
    feats = registry.build_encoder(spec).encode(__import__("torch").zeros(2, 3, 64, 64))
    assert feats.shape == (2, 16, 24)


def test_an_entry_point_that_is_not_a_family_is_refused_naming_it(tmp_path, monkeypatch):
    site = tmp_path / "bad"
    install_example(site, family="wrong_name")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    with pytest.raises(ConfigError, match="wrong_name = vislaw_example_family.*'example_patches'"):
        registry.family_class("wrong_name")
    sys.modules.pop("vislaw_example_family", None)


@pytest.mark.slow
def test_plugin_family_runs_through_features_and_the_c_score(plugin_site, tmp_path):
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), tmp_path)
    config["encoders"] = {
        "clip224": config["encoders"]["clip224"],
        "patches": {"family": "example_patches", "tiny": True, "input_size": 112, "patch_size": 14},
    }
    config["targets"] = ["c_score"]
    config["train"]["recipes"] = {}
    config["a_score"]["references"] = {"224": "clip224"}
    config["lmvr"]["encoders"] = ["clip224"]
    config["warm_start"] = False
    path = tmp_path / "plugin.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), str(ROOT)])}
    result = run_snakemake(
        "--cores", "2", "--configfile", str(path), "--directory", str(tmp_path), env=env
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    c_scores = pd.read_csv(Path(config["results_dir"]) / "demo" / "scores" / "c_scores.csv")
    assert set(c_scores["encoder"]) == {"clip224", "patches"}

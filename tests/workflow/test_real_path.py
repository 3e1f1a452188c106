"""config.yaml's real path, offline on CPU: `prepare` -> features -> C score for every encoder of
config.yaml, each loaded by ``from_pretrained(<its real repo id>)`` from a Hub cache.

The cache holds tiny random-init twins saved under the real ids in the real repo layouts
(tests/helpers/hub_twins.py); SPair-71k is a small archive in the real layout (the demo
generator's), served from 127.0.0.1 and fetched by `prepare` with config.yaml's spair source pointed
there. Test-only overrides, to stay fast on two cores: the diffusion encoders run at 256 px instead
of 512-768 (the same code, a smaller grid), the other data sources, the LLM and the benchmarks are
left out (not used by features and C score), ConvLLaVA's training recipe is off (its features
would need stage 1), and resources are one CPU per job."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.file_server import FileServer
from helpers.paths import ROOT
from helpers.rehearsal_data import spair
from helpers.run import run_snakemake

# config.yaml's prepare, features and C score through Snakemake (minutes)
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DIFFUSION = ("sd_unet", "sd_image_variations", "dit", "sd3")


def _config(tmp_path: Path, url: str, archive: bytes) -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    spair = {**config["data"]["sources"]["spair"], "url": url}
    spair["sha256"] = hashlib.sha256(archive).hexdigest()
    config["data"]["root"] = str(tmp_path / "data")
    config["data"]["sources"] = {"spair": spair}
    config["cache"]["hf_home"] = str(tmp_path / "hf")
    config["results_dir"] = str(tmp_path / "results")
    config["targets"] = ["c_score"]
    config["device"] = "cpu"
    config["benchmarks"] = []
    config.get("eval", {}).pop("tasks", None)  # its task overrides name the dropped benchmarks
    config["llm"] = {"tiny": True}
    # LMVR's layers are the 7B LLM's (16); the tiny LLM has 2 (the config check refuses 16)
    config["lmvr"]["layers"] = [-1]
    config["lmvr"]["maps"]["layer"] = -1
    config["train"]["recipes"] = {}
    config["features"] = {"image_set": "spair", "batch_size": 4, "dtype": "float32"}
    config["resources"] = {"default": {"cpus": 1, "mem_mb": 2000, "runtime": 10}}
    for entry in config["encoders"].values():
        if entry["family"] in DIFFUSION:
            entry["input_size"] = 256
    return config


def _snakemake(*args: str) -> subprocess.CompletedProcess:
    return run_snakemake(*args, env={"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})


def test_config_yaml_prepare_features_c_score_offline(tmp_path):
    from helpers.hub_twins import write_hub_twins
    from vislaw.io.hdf5 import read_features
    from vislaw.pipeline import load_checked_config

    archive = spair(tmp_path / "src")
    server = FileServer()
    server.files["/SPair-71k.tar.gz"] = archive
    try:
        config = _config(tmp_path, server.url("/SPair-71k.tar.gz"), archive)
        path = tmp_path / "paper-offline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        checked, specs = load_checked_config(path)
        written = write_hub_twins(tmp_path / "hf", specs)
        real = {s.model_id for s in specs.values() if s.model_id}
        assert set(written) == real and len(real) == 14

        refused = _snakemake("-n", "--configfile", str(path))
        assert refused.returncode != 0 and "snakemake prepare" in refused.stderr

        prepared = _snakemake("prepare", "--configfile", str(path), "--cores", "2")
        assert prepared.returncode == 0, prepared.stdout[-3000:] + prepared.stderr[-3000:]
        assert server.ranges == [None]  # one download, no retry
    finally:
        server.stop()
    assert (tmp_path / "data" / "SPair-71k" / "JPEGImages").is_dir()
    assert len(list((tmp_path / "hf" / "vislaw-prepared").glob("*.json"))) == 14

    result = _snakemake("--configfile", str(path), "--cores", "2")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run = tmp_path / "results" / checked["run"]
    table = pd.read_csv(run / "scores" / "c_scores.csv")
    assert set(table["encoder"]) == set(specs)
    assert table["n_pairs"].eq(4).all()
    for name, spec in specs.items():
        if spec.family == "fusion":
            continue
        attrs = read_features(run / "features" / f"{name}.h5").meta["encoder"]
        assert attrs["model_id"] == spec.model_id and not attrs.get("tiny")

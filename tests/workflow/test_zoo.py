"""config/zoo_2026.yaml (issue 28, scope 5): today's encoders, a chat LLM with its own template
and the Cambrian vision-centric benchmarks pass the config check; its CPU variant
config/zoo_2026_demo.yaml, tiny twins of the same architecture classes plus a family from
another package (tests/unit/encoders/test_plugin_family.py's example), runs through features, C
score, stage 1, embeddings, stage 2 and evaluation."""

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
from vislaw.encoders import registry
from vislaw.eval.tasks import resolve_benchmarks
from vislaw.pipeline import load_checked_config
from vislaw.vlm.checkpoints import VlmInfo

pytestmark = pytest.mark.slow  # the 2026 zoo's twins through every stage

ZOO = ROOT / "config/zoo_2026.yaml"
DEMO = ROOT / "config/zoo_2026_demo.yaml"
# What each demo twin is built as: the architecture class the zoo's real checkpoint loads into.
TWIN_CLASSES = {
    "siglip2": "SiglipVisionModel",
    "siglip2_naflex": "Siglip2VisionModel",
    "dinov2_reg": "Dinov2WithRegistersModel",
    "dinov3": "DINOv3ViTModel",
    "aimv2": "Aimv2VisionModel",
    "pe_core": "Eva",
    "laion_convnext": "TimmModel",
}
CAMBRIAN = {"cv_bench", "mmvp", "mmstar", "realworldqa", "pope"}


def test_zoo_passes_the_config_check_with_remote_code_only_where_marked():
    config, specs = load_checked_config(ZOO)
    tasks = {b.task for b in resolve_benchmarks(config)}
    assert tasks >= CAMBRIAN and any(t.startswith("blink_") for t in tasks)
    trusted = {n for n, s in specs.items() if s.options.get("trust_remote_code")}
    assert trusted == {"internvit"}
    assert config["train"]["stage2"]["template"] == "auto"
    assert {s.family for s in specs.values()} >= {"hf_auto", "timm", "open_clip"}


def test_demo_twins_are_the_zoos_architectures():
    zoo = yaml.safe_load(ZOO.read_text())["encoders"]
    _, specs = load_checked_config(DEMO)
    assert set(TWIN_CLASSES) == set(specs)
    for name, spec in specs.items():
        assert zoo[name]["family"] == spec.family, name
        model = registry.build_encoder(spec).model
        assert type(model).__name__ == TWIN_CLASSES[name], name
    assert type(registry.build_encoder(specs["laion_convnext"]).model.trunk).__name__ == "ConvNeXt"


def test_zoo_demo_runs_every_twin_through_training_and_evaluation(tmp_path, monkeypatch):
    site = tmp_path / "site"
    install_example(site)  # a family from another package, found through its entry point
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
    config = isolate(yaml.safe_load(DEMO.read_text()), tmp_path)
    config["encoders"]["patches"] = {
        "family": "example_patches",
        "tiny": True,
        "input_size": 112,
        "patch_size": 14,
    }
    path = tmp_path / "zoo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    try:
        result = run_snakemake(
            "--cores", "2", "--configfile", str(path), "--directory", str(tmp_path), env=env,
            timeout=1500,
        )  # fmt: skip
    finally:
        sys.modules.pop("vislaw_example_family", None)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = Path(config["results_dir"]) / config["run"]
    encoders = set(config["encoders"])
    c_scores = pd.read_csv(run_dir / "scores" / "c_scores.csv")
    assert set(c_scores["encoder"]) == encoders
    for name in encoders:
        assert (run_dir / "stage1" / name / "vlm.json").is_file(), name
        # Stage 2 rendered the dialogues with the Llama-3 twin's own chat template.
        assert VlmInfo.read(run_dir / "stage2" / name).template == "auto", name
    scores = pd.read_csv(run_dir / "scores" / "benchmarks.csv")
    assert set(scores["encoder"]) == encoders
    assert set(scores["benchmark"]) == set(config["benchmarks"])
    assert scores.groupby("encoder").size().eq(len(config["benchmarks"])).all()

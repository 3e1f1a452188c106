"""The policy mode end to end on a small copy of the demo config (3 tiny encoders, 2
benchmarks, a few samples): only the picked encoders get stage 2, rounds.csv agrees with the
finetunes on disk, and a second run with a larger budget continues without repeating one."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import run_snakemake

pytestmark = pytest.mark.slow  # two Snakemake runs of a small DAG (about 2-3 min on 2 cores)

ENCODERS = ["clip224", "clip336", "dinov2"]  # the two CLIPs are the A references


def small_config(results: Path) -> dict:
    """config/demo.yaml cut down: 3 encoders, 2 benchmarks, tiny data, targets [policy]."""
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["run"] = "policy_demo"
    config["results_dir"] = str(results)
    config["targets"] = ["policy"]
    config["encoders"] = {name: config["encoders"][name] for name in ENCODERS}
    config["benchmarks"] = ["synth_color", "synth_shape"]
    config["data"]["root"] = str(results / "data")
    config["data"]["synthetic"].update(
        n_pretrain=16, n_instruct=16, n_benchmark_questions=8, spair_categories=["bird"]
    )
    config["train"].pop("recipes", None)
    config["a_score"].update(n_images=4, n_captions=8)
    for stage in ("stage1", "stage2"):
        config["train"][stage].update(save_steps=2)
    config.pop("lmvr", None)
    config["policy"] = {"budget": 1}
    return config


def _run(config: dict, path: Path) -> subprocess.CompletedProcess:
    path.write_text(yaml.safe_dump(config))
    result = run_snakemake("--cores", "2", "--configfile", str(path))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-8000:]
    return result


def _finetuned(run_dir: Path) -> set[str]:
    return {p.parent.name for p in (run_dir / "stage2").glob("*/vlm.json")}


@pytest.fixture(scope="module")
def policy_runs(tmp_path_factory):
    results = tmp_path_factory.mktemp("policy")
    config = small_config(results)
    _run(config, results / "config.yaml")
    run_dir = results / "policy_demo"
    first = {
        "finetuned": _finetuned(run_dir),
        "rounds": pd.read_csv(run_dir / "policy" / "rounds.csv"),
        "mtimes": {p: p.stat().st_mtime for p in (run_dir / "stage2").glob("*/vlm.json")},
    }
    config["policy"]["budget"] = 2
    _run(config, results / "config.yaml")
    second = {
        "finetuned": _finetuned(run_dir),
        "rounds": pd.read_csv(run_dir / "policy" / "rounds.csv"),
    }
    return run_dir, first, second


def _picked(rounds: pd.DataFrame) -> list[str]:
    return [e for value in rounds["picked"].fillna("") for e in str(value).split()]


def test_only_picked_encoders_are_finetuned(policy_runs):
    run_dir, first, _ = policy_runs
    picked = _picked(first["rounds"])
    assert len(picked) == 1
    assert first["finetuned"] == set(picked)
    # A and C exist for every encoder (A needs stage 1 only)
    a = pd.read_csv(run_dir / "scores" / "a_scores.csv")
    assert set(a["encoder"]) == set(ENCODERS)
    assert {p.parent.name for p in (run_dir / "stage1").glob("*/vlm.json")} == set(ENCODERS)


def test_rounds_csv_agrees_with_disk(policy_runs):
    run_dir, first, _ = policy_runs
    rounds = first["rounds"]
    assert list(rounds["round"]) == list(range(len(rounds)))
    assert bool(rounds["stop"].iloc[-1]) and not rounds["stop"].iloc[:-1].any()
    assert "budget" in rounds["why"].iloc[-1]
    assert set(rounds["finetuned"].iloc[-1].split()) == first["finetuned"]
    for value in rounds["top_k"]:
        assert value.count("[") == 3  # k = 3 entries with intervals
    policy = run_dir / "policy"
    assert "Choose" in (policy / "recommendation.md").read_text()
    assert (policy / "predicted_vs_measured.png").stat().st_size > 0


def test_second_run_continues_without_repeating(policy_runs):
    run_dir, first, second = policy_runs
    assert first["finetuned"] < second["finetuned"]
    assert len(second["finetuned"]) == 2
    assert second["finetuned"] == set(_picked(second["rounds"]))
    assert set(second["rounds"]["finetuned"].iloc[-1].split()) == second["finetuned"]
    assert _picked(second["rounds"])[:1] == _picked(first["rounds"])
    for path, mtime in first["mtimes"].items():
        assert path.stat().st_mtime == mtime, f"{path} was retrained"

"""The cost table (python -m vislaw.cost): what the README shows is what the code computes for
config.yaml, subsets cost less, and time limits follow the estimates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vislaw.config import load_config
from vislaw.cost import cost_lines, format_table
from vislaw.resources import rule_resources

ROOT = Path(__file__).resolve().parents[1]


def test_readme_shows_the_cost_table_of_config_yaml():
    table = format_table(cost_lines(load_config(ROOT / "config.yaml")))
    assert table in (ROOT / "README.md").read_text(), "README cost table is stale:\n" + table


def test_subsets_cost_less_and_features_only_trains_convllava_stage1():
    config = load_config(ROOT / "config.yaml")
    full = {line.rule: line for line in cost_lines(config)}
    features = {line.rule: line for line in cost_lines(config, ["features"])}
    assert set(features) == {"features", "stage1"}
    assert features["stage1"].jobs == 3  # the ConvLLaVA encoders only
    assert sum(x.gpu_hours for x in features.values()) < sum(x.gpu_hours for x in full.values())


def test_time_limits_follow_the_estimates():
    config = load_config(ROOT / "config.yaml")
    llava = rule_resources(config, "stage1", "clip224")["runtime"]
    convllava = rule_resources(config, "stage1", "convllava_1536")["runtime"]
    assert 5.5 * 60 <= llava < convllava
    # an explicit runtime wins over the estimate
    config["resources"]["stage1"]["runtime"] = 77
    assert rule_resources(config, "stage1", "convllava_1536")["runtime"] == 77


def test_cost_cli_prints_the_table():
    result = subprocess.run(
        [sys.executable, "-m", "vislaw.cost", "--targets", "c_score"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "| features |" in result.stdout and "GPU-hours" in result.stdout
    assert "| stage2 |" not in result.stdout


def test_multi_node_training_asks_per_node_and_launches_srun(monkeypatch, tmp_path):
    import pytest

    from vislaw.config import ConfigError
    from vislaw.resources import job_gpus
    from vislaw.train.launch import srun_command, torchrun_command

    monkeypatch.setenv("VISLAW_GPU_MODEL", "a100")
    config = load_config(ROOT / "config.yaml")
    config["resources"]["stage2"] = {**config["resources"]["stage2"], "gpus": 16, "nodes": 2}
    res = rule_resources(config, "stage2", "clip224")
    assert (res["nodes"], res["gres"]) == (2, "gpu:a100:8") and "gpu" not in res
    assert job_gpus(res) == (8, 2)
    config["resources"]["stage2"]["gpus"] = 15
    with pytest.raises(ConfigError, match="resources.stage2.gpus"):
        rule_resources(config, "stage2")
    agent = torchrun_command(
        tmp_path / "c.yaml",
        2,
        "clip224",
        tmp_path,
        8,
        nodes=2,
        rdzv_endpoint="node1:29400",
        rdzv_id="123",
    )
    command = srun_command(agent, 2)
    assert command[:2] == ["srun", "--nodes=2"] and "--ntasks-per-node=1" in command
    assert "--nnodes=2" in agent and "--rdzv-endpoint=node1:29400" in agent
    assert "--nproc_per_node=8" in agent

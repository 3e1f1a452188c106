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

"""The cost table (python -m vislaw.cost): what the README shows is what the code computes for
config.yaml, subsets cost less, and time limits follow the estimates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers.paths import ROOT
from vislaw.config import load_config
from vislaw.cost import cost_lines, format_table, job_hours, total_gpu_hours
from vislaw.resources import rule_resources


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
    # CLIP@224: 16x16 = 256 image tokens; LLaVA's 3.5 h x (256 + 40) / (576 + 40) = 1.68 h,
    # x 1.5 safety = 151 min, rounded up to 10 min.
    assert rule_resources(config, "stage1", "clip224")["runtime"] == 160
    llava = rule_resources(config, "stage1", "clip224")["runtime"]
    convllava = rule_resources(config, "stage1", "convllava_1536")["runtime"]
    assert llava < convllava
    # an explicit runtime wins over the estimate
    config["resources"]["stage1"]["runtime"] = 77
    assert rule_resources(config, "stage1", "convllava_1536")["runtime"] == 77


def test_paper_config_against_the_hand_calculation():
    """config.yaml's CLIP@336 + Vicuna-7B is LLaVA-1.5-7B itself: the published hours."""
    config = load_config(ROOT / "config.yaml")
    assert job_hours(config, "stage1", 8, "clip336") == pytest.approx(3.5)
    assert job_hours(config, "stage2", 8, "clip336") == pytest.approx(10.0)
    # SigLIP-B: 14x14 = 196 tokens; stage 2: 10 h x (196 + 250) / (576 + 250)
    assert job_hours(config, "stage2", 8, "siglip_b") == pytest.approx(10 * 446 / 826)
    lines = {x.rule: x for x in cost_lines(config)}
    assert lines["stage2"].gpu_hours == pytest.approx(
        sum(job_hours(config, "stage2", 1, e) for e in config["encoders"])
    )


def test_second_config_against_the_hand_calculation():
    """Vicuna-13B, LoRA, a tenth of the 665K set for 2 epochs, stage 2 on 4 GPUs."""
    config = load_config(ROOT / "config.yaml")
    config["llm"] = {"model_id": "lmsys/vicuna-13b-v1.5"}
    stage2 = config["train"]["stage2"]
    stage2 |= {"max_samples": 66_529, "epochs": 2, "lora": {"r": 8}}
    config["resources"]["stage2"] = {**config["resources"]["stage2"], "gpus": 4}
    # 10 h x 8 GPUs x 13.0 / 6.74 params x (66,529 x 2 x (256 + 250)) / (665,298 x (576 + 250))
    # tokens x 2/3 (LoRA) = 12.603 GPU-hours; on 4 GPUs 3.151 h.
    assert job_hours(config, "stage2", 4, "clip224") == pytest.approx(3.150775, rel=1e-5)
    line = {x.rule: x for x in cost_lines(config, ["stage2"])}["stage2"]
    assert line.gpus == 4
    # the same scaling without LoRA and 13B: Vicuna-7B's full finetune, same subset
    config["llm"] = {"model_id": "lmsys/vicuna-7b-v1.5"}
    stage2["lora"] = None
    full = 10 * 8 * (66_529 * 2 * 506) / (665_298 * 826) / 4
    assert job_hours(config, "stage2", 4, "clip224") == pytest.approx(full)
    config["llm"] = {"model_id": "my-org/some-llm"}
    with pytest.raises(ValueError, match="llm.model_id"):
        job_hours(config, "stage2", 4, "clip224")


def test_policy_target_costs_a_range_above_zero():
    config = load_config(ROOT / "config.yaml")
    lines = {x.rule: x for x in cost_lines(config, ["policy"])}
    assert set(lines) == {"features", "stage1", "stage2", "embeddings", "evaluate"}
    assert (lines["stage2"].jobs, lines["stage2"].jobs_max) == (2, 4)  # min_finetunes, budget
    assert lines["stage1"].jobs == len(config["encoders"])  # A of every encoder
    each = sorted(job_hours(config, "stage2", 1, e) for e in config["encoders"])
    assert lines["stage2"].gpu_hours == pytest.approx(sum(each[:2]))  # the 2 cheapest
    assert lines["stage2"].gpu_hours_max == pytest.approx(sum(each[-4:]))  # the 4 dearest
    low, high = total_gpu_hours(lines.values())
    assert 0 < low < high
    result = subprocess.run(
        [sys.executable, "-m", "vislaw.cost", "--targets", "policy", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["gpu_hours"] == pytest.approx([low, high])
    picks = [r for r in report["jobs"] if r["policy_pick"]]
    assert {r["rule"] for r in picks} == {"stage2", "evaluate"}
    assert all(r["gpu_hours"] > 0 for r in report["jobs"])


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
    from vislaw.ranks import srun_command, torchrun_command
    from vislaw.resources import job_gpus

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
        ["-m", "vislaw.ranks", str(tmp_path / "call.json")],
        8,
        nodes=2,
        rdzv_endpoint="node1:29400",
        rdzv_id="123",
    )
    command = srun_command(agent, 2)
    assert command[:2] == ["srun", "--nodes=2"] and "--ntasks-per-node=1" in command
    assert "--nnodes=2" in agent and "--rdzv-endpoint=node1:29400" in agent
    assert "--nproc_per_node=8" in agent

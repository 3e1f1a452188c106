"""What ``prepare`` fetches for the benchmarks is what lmms-eval itself loads, and ``prepare list``
/ ``prepare status`` print the same items (issue 24, scope 1)."""

from __future__ import annotations

import json

import pytest

from helpers.paths import ROOT
from vislaw.eval.tasks import resolve_benchmarks
from vislaw.pipeline import load_checked_config
from vislaw.prepare import hub
from vislaw.prepare.__main__ import main as prepare_main


@pytest.fixture(scope="module")
def paper():
    return load_checked_config(ROOT / "config.yaml")


def _lmms_eval_loads(task: str) -> dict:
    """What lmms-eval's own task index and YAML loader say ``task`` passes to load_dataset."""
    from lmms_eval.utils import load_yaml_config

    from vislaw.eval.task_copies import _installed_index

    entry = _installed_index()[task]
    config = load_yaml_config(entry["yaml_path"], mode="simple")
    kwargs = config.get("dataset_kwargs") or {}
    return {
        "repo": config["dataset_path"],
        "config_name": config.get("dataset_name"),
        "revision": kwargs.get("revision"),
        "split": config["test_split"],
    }


def test_every_benchmark_dataset_is_the_one_lmms_eval_loads(paper):
    config, specs = paper
    repos = hub.hub_repos(config, specs)
    benches = resolve_benchmarks(config)
    assert len(benches) == 8
    expected = {}
    for bench in benches:
        want = _lmms_eval_loads(bench.task)
        repo = repos[f"dataset:{want['repo']}"]  # KeyError: prepare would fetch another repo
        assert repo.config_name == want["config_name"], bench.name
        assert repo.revision == want["revision"], bench.name
        assert want["split"] in repo.splits, bench.name
        expected[f"dataset:{want['repo']}"] = repo
    datasets = {k: r for k, r in repos.items() if r.repo_type == "dataset"}
    assert datasets == expected  # nothing fetched that no task loads
    assert "dataset:lmms-lab-encoder/MME" in datasets  # 0.7.3's ids, not the old lmms-lab/


def test_eval_task_override_changes_the_dataset_read(paper):
    config, specs = paper
    config = {**config, "eval": {**config["eval"], "tasks": {"mmbench_en": "mmbench_en_dev"}}}
    repo = hub.hub_repos(config, specs)["dataset:lmms-lab-encoder/MMBench"]
    assert repo.why == "benchmarks (mmbench_en_dev)"
    assert repo.splits == ("dev",)


def test_list_json_names_every_item_and_status_uses_the_same_list(tmp_path, capsys):
    text = (ROOT / "config.yaml").read_text()
    text = text.replace("root: data", f"root: {tmp_path / 'data'}")
    text = text.replace("hf_home: data/hf_home", f"hf_home: {tmp_path / 'hf'}")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    assert prepare_main(["list", "--config", str(cfg), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kinds = {r["kind"] for r in rows}
    assert kinds == {"url", "hub-file", "manual", "model", "dataset"}
    assert not any(r["prepared"] for r in rows)
    sd3 = next(r for r in rows if r["source"] == "stabilityai/stable-diffusion-3-medium-diffusers")
    assert sd3["dest"] == str(
        tmp_path / "hf" / "hub" / "models--stabilityai--stable-diffusion-3-medium-diffusers"
    )
    sqa = next(r for r in rows if r["source"] == "lmms-lab-encoder/ScienceQA")
    assert sqa["config_name"] == "ScienceQA-IMG" and sqa["splits"] == ["test"]

    assert prepare_main(["status", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{len(rows)} real input(s)" in err and "lmms-lab-encoder/SEED-Bench" in err

    config, specs = load_checked_config(cfg)
    mme = hub.hub_repos(config, specs)["dataset:lmms-lab-encoder/MME"]
    marker = hub.marker_path(tmp_path / "hf", mme)
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    assert prepare_main(["list", "--config", str(cfg), "--json"]) == 0
    done = [r["source"] for r in json.loads(capsys.readouterr().out) if r["prepared"]]
    assert done == ["lmms-lab-encoder/MME"]
    assert prepare_main(["status", "--config", str(cfg)]) == 1
    assert f"{len(rows) - 1} real input(s)" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted((ROOT / "config").glob("*.yaml")) + [ROOT / "config.yaml"])
def test_no_config_names_a_deleted_hub_repo(path):
    """A config naming a deleted repo fails only at `prepare` (issue 24, scope 7)."""
    import yaml

    encoders = (yaml.safe_load(path.read_text()) or {}).get("encoders") or {}
    named = {e.get("model_id") for e in encoders.values()} - {None}
    assert not named & set(hub.MOVED_REPOS), f"{path.name}: use {hub.MOVED_REPOS}"


def test_list_and_status_follow_the_targets(tmp_path, capsys):
    """`--targets c_score` needs SPair-71k and the encoders, plus LLaVA-Pretrain and Vicuna for
    ConvLLaVA's stage 1 (its C score uses the trained encoder); no benchmark, no 665K images."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        (ROOT / "config.yaml")
        .read_text()
        .replace("root: data", f"root: {tmp_path / 'data'}")
        .replace("hf_home: data/hf_home", f"hf_home: {tmp_path / 'hf'}")
    )
    assert prepare_main(["list", "--config", str(cfg), "--json", "--targets", "c_score"]) == 0
    rows = json.loads(capsys.readouterr().out)
    sources = {r["source"] for r in rows}
    assert not any(r["kind"] == "dataset" for r in rows)
    assert "http://images.cocodataset.org/zips/train2017.zip" not in sources
    assert "liuhaotian/LLaVA-Pretrain/images.zip" in sources and "lmsys/vicuna-7b-v1.5" in sources
    assert any(s.endswith("SPair-71k.tar.gz") for s in sources)
    assert "stabilityai/stable-diffusion-3-medium-diffusers" in sources
    assert prepare_main(["status", "--config", str(cfg), "--targets", "c_score"]) == 1
    assert f"{len(rows)} real input(s)" in capsys.readouterr().err
    assert prepare_main(["list", "--config", str(cfg), "--json", "--targets", "lmvr"]) == 0
    lmvr = {r["source"] for r in json.loads(capsys.readouterr().out)}
    assert any("imagenette" in s for s in lmvr) and "lmms-lab-encoder/MME" not in lmvr


def test_task_yaml_reader_merges_includes_as_lmms_eval_does(tmp_path):
    """The including file wins, includes resolve next to the including file, !function is
    kept as text; lmms-eval's own loader gives the same dict."""
    from lmms_eval.utils import load_yaml_config

    from vislaw.eval.task_data import read_task_yaml

    (tmp_path / "base_yaml").write_text(
        "dataset_path: org/base\ndataset_name: a\ndataset_kwargs: {token: true}\n"
        "process_results: !function utils.process\n"
    )
    (tmp_path / "mid.yaml").write_text("include: base_yaml\ndataset_name: b\ntest_split: dev\n")
    (tmp_path / "task.yaml").write_text("task: t\ninclude: mid.yaml\ndataset_path: org/real\n")
    ours = read_task_yaml(tmp_path / "task.yaml")
    assert ours["dataset_path"] == "org/real" and ours["dataset_name"] == "b"
    assert ours["dataset_kwargs"] == {"token": True} and ours["test_split"] == "dev"
    theirs = load_yaml_config(str(tmp_path / "task.yaml"), mode="simple")
    assert {k: v for k, v in ours.items() if k != "process_results"} == {
        k: v for k, v in theirs.items() if k != "process_results"
    }


def test_a_task_prepare_cannot_mirror_is_named():
    from vislaw.eval.task_data import task_data

    video = task_data("FALCONBench_mcq")  # a video task: lmms-eval fetches its archives itself
    assert "video" in video.unsupported
    assert task_data("mme").unsupported == ()


@pytest.mark.parametrize(
    ("name", "wanted", "unwanted"),
    [
        ("clip224", "config.json", "*.py"),
        ("laion_convnext", "open_clip_model.safetensors", "*.py"),
        ("dinov2_reg", "preprocessor_config.json", "*.py"),
        ("internvit", "*.py", None),
    ],
)
def test_prepare_fetches_the_files_each_family_reads(name, wanted, unwanted):
    """The family class names the files its loading code reads: open_clip's own layout, hf_auto's
    image processor, and remote code only for an entry that trusts it (config/zoo_2026.yaml)."""
    _, specs = load_checked_config(ROOT / "config" / "zoo_2026.yaml")
    patterns = hub.encoder_patterns(specs[name])
    assert wanted in patterns
    assert unwanted is None or unwanted not in patterns

"""One home per fact (issue 27 scope 3): a family, a benchmark and a recipe are each one record
in one registry, and what checks, costs, prepares and runs them reads that record.

The throwaway tests add a family (a real subclass of a built-in family under its own name) and
a benchmark (a real installed lmms-eval task) to the registries for the test's duration only,
and show that the config check, the family's semantic checks, the cost model, prepare's Hub
patterns and the conda env all handle them with no other edit. Before the families held their
own facts, each of these read a table of family names and treated a new family as a plain ViT
(no checks, ViT cost, transformers files), and a benchmark's judge and group size lived in
tables keyed by task.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.paths import ROOT
from vislaw.config import ConfigError
from vislaw.cost import GPU_HOURS, REF_HOURS, job_hours
from vislaw.encoders import registry
from vislaw.encoders.clip import ClipEncoder
from vislaw.encoders.dit import DitEncoder
from vislaw.eval import tasks
from vislaw.eval.tasks import OPENAI_JUDGE, Benchmark, resolve_benchmarks
from vislaw.pipeline import load_checked_config
from vislaw.prepare.hub import benchmark_datasets, hub_repos
from vislaw.train.recipes import RECIPES

SCHEMA = yaml.safe_load((ROOT / "vislaw/schema/config.schema.yaml").read_text())


class ThrowawayVit(ClipEncoder):
    """A ViT family of its own name: CLIP's classes, a 2-layer default twin."""

    family = "throwaway_vit"
    tiny_defaults = {**ClipEncoder.tiny_defaults, "num_hidden_layers": 2}


class ThrowawayDiffusion(DitEncoder):
    """A diffusion transformer family of its own name, reading one more Hub folder."""

    family = "throwaway_dit"
    hub_folders = (*DitEncoder.hub_folders, "extra")


@pytest.fixture
def throwaway_family(monkeypatch):
    """Both throwaway families in FAMILIES (the dict itself, so fusion sees them too), removed
    afterwards by monkeypatch."""
    monkeypatch.setitem(registry.FAMILIES, ThrowawayVit.family, ThrowawayVit)
    monkeypatch.setitem(registry.FAMILIES, ThrowawayDiffusion.family, ThrowawayDiffusion)


def demo_config(tmp_path: Path, **encoders: dict[str, Any]) -> dict[str, Any]:
    """The demo config, outputs under tmp_path, with ``encoders`` added."""
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["data"]["root"] = str(tmp_path / "data")
    config["encoders"].update(copy.deepcopy(encoders))
    return config


def test_schema_recipe_enums_are_the_recipe_registry():
    train = SCHEMA["properties"]["train"]["properties"]
    assert train["recipe"]["enum"] == list(RECIPES)
    assert train["recipes"]["additionalProperties"]["enum"] == list(RECIPES)
    assert train["recipe"]["default"] in RECIPES
    assert all(name == recipe.name for name, recipe in RECIPES.items())


def test_every_recipe_prices_both_stages_with_the_cost_models_anchors():
    for recipe in RECIPES.values():
        assert set(recipe.cost_phases) == {"stage1", "stage2"}
        assert all(
            anchor in REF_HOURS and data in REF_HOURS
            for phases in recipe.cost_phases.values()
            for anchor, data in phases
        )


def test_every_familys_feature_cost_is_a_cost_row():
    assert all(cls.feature_cost in GPU_HOURS for cls in registry.FAMILIES.values())


def test_every_diffusers_family_names_the_hub_folders_it_loads():
    """Without them prepare would fetch only model_index.json and the offline job would fail."""
    from vislaw.encoders.diffusion import DiffusionEncoder

    diffusers = [c for c in registry.FAMILIES.values() if issubclass(c, DiffusionEncoder)]
    assert diffusers and all({"vae", "scheduler"} <= set(c.hub_folders) for c in diffusers)


def test_schema_names_families_through_the_registry_and_lists_the_paper_benchmarks():
    """The schema has no family enum (a plugin family must pass it; the registry names the
    known ones), and its benchmarks description names every paper benchmark of the registry."""
    family = SCHEMA["$defs"]["encoder"]["properties"]["family"]
    assert "enum" not in family and "registry.FAMILIES" in family["description"]
    described = SCHEMA["properties"]["benchmarks"]["description"]
    paper = [name for name, bench in tasks.BENCHMARKS.items() if not bench.local]
    assert paper and all(name in described for name in paper)
    assert all(name == bench.name for name, bench in tasks.BENCHMARKS.items())
    assert all(key in tasks.JUDGES for b in tasks.BENCHMARKS.values() for key in b.judges.values())


def test_a_throwaway_family_passes_the_config_check_costs_prepares_and_has_an_env(
    throwaway_family, tmp_path
):
    config = demo_config(
        tmp_path,
        vit_x={"family": "throwaway_vit", "tiny": True, "input_size": 112},
        dit_x={"family": "throwaway_dit", "model_id": "org/throwaway-dit", "input_size": 256},
        fused_x={"family": "fusion", "members": ["clip224", "vit_x"]},
    )
    checked, specs = load_checked_config(config)
    assert registry.token_grid(specs["vit_x"]) == (8, 8)
    assert registry.conda_env(specs["vit_x"]) == "transformers"
    assert registry.conda_env(specs["dit_x"]) == "diffusers"
    assert registry.conda_env(specs["fused_x"]) == "transformers"
    # cost: the diffusion family's features row, read from its class
    assert job_hours(checked, "features", 1, "dit_x") == GPU_HOURS["features_diffusion"]
    assert job_hours(checked, "features", 1, "vit_x") == GPU_HOURS["features"]
    # prepare: the diffusers folders the class names, not the transformers layout
    patterns = hub_repos(checked, specs)["model:org/throwaway-dit"].allow_patterns
    assert "model_index.json" in patterns
    assert {"transformer/*.safetensors", "extra/*.json"} <= set(patterns)
    assert "model*.safetensors" not in patterns


@pytest.mark.parametrize(
    ("entry", "key", "message"),
    [
        (
            {"family": "throwaway_vit", "tiny": True, "input_size": 120},
            "encoders.bad.input_size",
            "120 is not a multiple of the patch size 14 (the last 8 pixel",
        ),
        (
            {"family": "throwaway_vit", "tiny": True, "input_size": 112, "layer": 3},
            "encoders.bad.layer",
            "3 is out of range: hidden_states (embeddings + layers) has 3",
        ),
        (
            {"family": "throwaway_dit", "tiny": True, "input_size": 256, "timestep": 1000},
            "encoders.bad.timestep",
            "trained on timesteps 0..999",
        ),
    ],
)
def test_a_throwaway_family_gets_its_parent_familys_semantic_checks(
    throwaway_family, tmp_path, entry, key, message
):
    with pytest.raises(ConfigError) as err:
        load_checked_config(demo_config(tmp_path, bad=entry))
    assert err.value.key == key and message in str(err.value)


def test_a_throwaway_benchmark_is_checked_resolved_and_prepared(monkeypatch, tmp_path):
    """A benchmark record on an installed lmms-eval task (MME's YAML), with a judge and a group
    size of its own: the config check accepts it, evaluation reads both from the record, and
    prepare lists the dataset the task's YAML loads."""
    bench = Benchmark(
        "throwaway_bench",
        "mme",
        "mme_perception_score",
        judges={"mme": "openai"},
        group_size=3,
    )
    monkeypatch.setitem(tasks.BENCHMARKS, bench.name, bench)
    config = demo_config(tmp_path)
    config["benchmarks"] = ["synth_color", bench.name]
    checked, specs = load_checked_config(config)
    (_, resolved) = resolve_benchmarks(checked)
    assert resolved == bench and resolved.judge is OPENAI_JUDGE and resolved.group_size == 3
    assert set(benchmark_datasets(checked)) == {bench.name}
    assert "dataset:lmms-lab-encoder/MME" in hub_repos(checked, specs)


def test_a_paper_tasks_judge_and_groups_follow_it_under_another_name():
    """The judge and group size are the record's: a paper benchmark's task named directly (or
    through eval.tasks) keeps them, as when they were tables keyed by task."""
    judged = tasks.get_benchmark("mmbench_en", {"mmbench_en": "mmbench_en_dev"})
    assert judged.judge is OPENAI_JUDGE and judged.group_size == 1
    assert tasks.get_benchmark("mmbench_en").judge is None
    assert tasks.get_benchmark("mme").group_size == 2
    renamed = tasks.lmms_task_benchmark("my_mme", "mme")
    assert renamed.group_size == 2 and renamed.judge is None
    assert tasks.lmms_task_benchmark("gpt_mmb", "mmbench_en_dev").judge is OPENAI_JUDGE

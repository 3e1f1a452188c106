"""Reruns follow the config (issue 22, scope 1): a run of a reduced demo, then for each kind of
key a dry run of the changed config plans exactly the jobs that read it and their downstream
jobs, nothing else (Snakemake's params rerun trigger on vislaw.pipeline.step_settings)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import isolate, run_snakemake, with_key
from vislaw.pipeline import STEP_KEYS, step_settings

pytestmark = pytest.mark.slow  # Snakemake runs of the demo DAG, rerun after each change

BASES = ["clip224", "clip336", "dinov2"]
FUSION = "clip224+dinov2"
ENCODERS = [*BASES, FUSION]
BENCHMARKS = ["synth_color", "synth_shape", "synth_position"]
# the tables, the law, and the report's pages of them (rules/report.smk)
TABLES = {"a_scores", "benchmarks_table", "law_input", "law", "report_tables"}
PAGES = ("report_tables", "")


def _reduced_demo(folder: Path) -> dict:
    """The demo config with three encoders and a fusion of two, three benchmarks, no LMVR."""
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), folder)
    config["encoders"] = {k: v for k, v in config["encoders"].items() if k in ENCODERS}
    config["benchmarks"] = BENCHMARKS
    config["train"].pop("recipes")
    config.pop("lmvr")
    config["targets"] = ["c_score", "a_score", "evaluate", "law", "report"]
    return config


def _write(config: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _planned(configfile: Path, *args: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run plans (the target rule `all` left out)."""
    return {(rule, wildcards) for rule, wildcards, _ in _dry_run(configfile, *args)}


def _dry_run(configfile: Path, *args: str) -> list[tuple[str, str, list[str]]]:
    """(rule, wildcards, outputs) of every job a dry run plans (the target rule `all` left out)."""
    result = run_snakemake(
        "-n", "--configfile", str(configfile), "--directory", str(configfile.parent), *args
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout + result.stderr):
        match = re.match(r"(?:local)?rule (\w+):", block)
        if match and match.group(1) != "all":
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M)
            outputs = re.search(r"^\s+output: (.*)$", block, re.M)
            jobs.append(
                (
                    match.group(1),
                    wildcards.group(1) if wildcards else "",
                    outputs.group(1).split(", ") if outputs else [],
                )
            )
    return jobs


def _per_encoder(rules: list[str], encoders: list[str]) -> set[tuple[str, str]]:
    return {(rule, f"encoder={e}") for rule in rules for e in encoders}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> tuple[dict, Path]:
    """The reduced demo, run once for real (its outputs and Snakemake's records of them)."""
    folder = tmp_path_factory.mktemp("reruns")
    config = _reduced_demo(folder)
    path = _write(config, folder / "demo.yaml")
    result = run_snakemake(
        "--cores", "2", "--configfile", str(path), "--directory", str(folder),
        "--profile", "profiles/local",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return config, folder


TRAINED = ["stage1", "stage2", "embeddings", "evaluate"]
CASES = {
    # an encoder's spec: its features, its fusion's (member spec), and all they feed
    "encoders.clip224.layer": (
        1,
        _per_encoder(["features", "stage1", "stage2", "embeddings", "evaluate"], ["clip224"])
        | _per_encoder(["fuse_features", *TRAINED], [FUSION])
        | _per_encoder(["c_score"], ["clip224", FUSION])
        | {("c_scores_table", ""), ("training_curves", "")}
        | {(t, "") for t in TABLES},
    ),
    # stage 1's lr: every stage 1 and everything trained from it; not features or C scores
    "train.stage1.lr": (
        5.0e-4,
        _per_encoder(TRAINED, ENCODERS) | {("training_curves", "")} | {(t, "") for t in TABLES},
    ),
    # stage 2's lr: not stage 1, nor the A score's stage-1 embeddings
    "train.stage2.lr": (
        5.0e-4,
        _per_encoder(["stage2", "evaluate"], ENCODERS)
        | {("training_curves", ""), ("benchmarks_table", ""), ("law_input", ""), ("law", "")}
        | {PAGES},
    ),
    "c_score.matcher": (
        "soft_argmax",
        _per_encoder(["c_score"], ENCODERS)
        | {("c_scores_table", ""), ("law_input", ""), ("law", ""), PAGES},
    ),
    # a benchmark dropped: the tables, and the per-encoder jobs that took every benchmark at
    # once (their set of inputs changed); no stage, feature or C score
    "benchmarks": (
        BENCHMARKS[:2],
        _per_encoder(["embeddings", "evaluate"], ENCODERS) | {(t, "") for t in TABLES},
    ),
    "law.trials": (500, {("law", ""), PAGES}),
    # how a step runs, not what it computes: nothing
    "c_score.block_size": (4, set()),
    "eval.batch_size": (2, set()),
}


def test_unchanged_config_plans_nothing(demo_run):
    config, folder = demo_run
    assert _planned(_write(config, folder / "same.yaml")) == set()


@pytest.mark.parametrize("key", list(CASES))
def test_a_changed_key_reruns_exactly_the_jobs_that_read_it(demo_run, key):
    config, folder = demo_run
    value, expected = CASES[key]
    path = _write(with_key(config, key, value), folder / f"{key.replace('.', '_')}.yaml")
    assert _planned(path) == expected


def test_every_scripted_rule_declares_its_settings():
    """Each rule that runs a script has `settings=rule_settings("<its name>")` in its params,
    and a STEP_KEYS entry (the prepare rules re-check every time: their outputs are temp)."""
    text = "\n".join(p.read_text() for p in sorted((ROOT / "rules").glob("*.smk")))
    blocks = re.split(r"\n(?=\s*(?:rule|checkpoint) \w+:)", text)
    scripted = {}
    for block in blocks:
        match = re.match(r"\s*(?:rule|checkpoint) (\w+):", block)
        if match and "script:" in block:
            scripted[match.group(1)] = block
    assert len(scripted) > 20
    for name, block in scripted.items():
        if name in ("prepare_data", "prepare_models"):
            continue
        assert f'settings=rule_settings("{name}")' in block, name
        assert name in STEP_KEYS, name


def test_step_settings_hold_the_encoder_spec_and_only_the_stage_read(minimal_config):
    from vislaw.pipeline import load_checked_config

    config, specs = load_checked_config(minimal_config)
    one = step_settings(config, specs, "stage1", {"encoder": "clip224"})
    other = dict(config, train={**config["train"], "stage2": {**config["train"]["stage2"]}})
    other["train"]["stage2"]["lr"] = 0.5
    assert step_settings(other, specs, "stage1", {"encoder": "clip224"}) == one
    assert step_settings(other, specs, "stage2", {"encoder": "clip224"}) != step_settings(
        config, specs, "stage2", {"encoder": "clip224"}
    )
    assert '"input_size":56' in one and '"patch_size":14' in one
    with pytest.raises(KeyError, match="no_such_step"):
        step_settings(config, specs, "no_such_step")


EDITED = {
    # consumers took only vlm.json: an edited projector reran nothing before issue 22
    "stage1/clip336/projector.safetensors": _per_encoder(
        ["stage2", "embeddings", "evaluate"], ["clip336"]
    )
    | {("training_curves", "")}
    | {(t, "") for t in TABLES},
    "stage2/clip336/projector.safetensors": _per_encoder(["evaluate"], ["clip336"])
    | {("benchmarks_table", ""), ("law_input", ""), ("law", ""), PAGES},
    "stage1/dinov2/loss.csv": {("training_curves", "")},
}


@pytest.mark.parametrize("name", list(EDITED))
def test_an_edited_stage_file_reruns_the_jobs_that_load_it(demo_run, name):
    """Every file a step loads is one of its inputs: an edited one reruns exactly its consumers
    (Snakemake compares the content, so the file's last byte changes; bytes and time are put
    back afterwards, for the other tests of the module)."""
    config, folder = demo_run
    path = folder / "results" / config["run"] / name
    data, times = path.read_bytes(), path.stat()
    try:
        path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        assert _planned(_write(config, folder / "edited.yaml")) == EDITED[name]
    finally:
        path.write_bytes(data)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def test_lmvr_probe_settings_rerun_the_probe_not_the_extraction():
    """LMVR is not in the run above: its two steps' values, read directly."""
    from vislaw.pipeline import load_checked_config

    config, specs = load_checked_config(ROOT / "config/demo.yaml")
    other = with_key(config, "lmvr.probe.test_fraction", 0.5)
    extract = {"encoder": "clip224"}
    assert step_settings(other, specs, "lmvr", extract) == step_settings(
        config, specs, "lmvr", extract
    )
    assert step_settings(other, specs, "lmvr_probe") != step_settings(config, specs, "lmvr_probe")
    prompt = with_key(config, "lmvr.prompt", "Name the shape.")
    assert step_settings(prompt, specs, "lmvr", extract) != step_settings(
        config, specs, "lmvr", extract
    )


CONV = "convllava_768"


def _convllava_config(folder: Path) -> Path:
    """The demo with one LLaVA encoder and one ConvLLaVA encoder (its recipe trains the encoder
    and, with train_llm, the LLM in stage 1), one benchmark, no tables."""
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), folder)
    config["encoders"] = {k: v for k, v in config["encoders"].items() if k in ("clip224", CONV)}
    config["train"]["recipes"] = {CONV: "convllava"}
    config["benchmarks"] = BENCHMARKS[:1]
    config.pop("lmvr")
    config["targets"] = ["features", "embeddings", "evaluate"]
    return _write(config, folder / "convllava.yaml")


def _stand_in_outputs(configfile: Path) -> None:
    """Every output a dry run plans, as an empty file (a folder where the name has no suffix:
    the LLM folders, task folders) with one old timestamp: Snakemake's mtime trigger then
    sees a finished run, and a file made newer plans exactly its consumers (and theirs)."""
    old = 1_600_000_000
    for _, _, outputs in _dry_run(configfile):
        for name in outputs:
            path = Path(name)
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
            os.utime(path, (old, old))
            for parent in path.parents:
                if parent == configfile.parent:
                    break
                os.utime(parent, (old, old))


def test_convllava_stage_folders_declare_the_trained_encoder_and_llm(tmp_path):
    """Rules stage1_encoder/stage2_encoder write encoder.safetensors (and stage 1's llm/ with
    train_llm) for the ConvLLaVA encoder only; clip224's stages stay the plain rules."""
    jobs = {(rule, wc): outputs for rule, wc, outputs in _dry_run(_convllava_config(tmp_path))}
    conv, clip = f"encoder={CONV}", "encoder=clip224"
    names = {key: {Path(o).relative_to(tmp_path / "results" / "demo").as_posix() for o in out}
             for key, out in jobs.items() if key[0].startswith("stage")}  # fmt: skip
    assert names[("stage1_encoder", conv)] == {
        f"stage1/{CONV}/{n}"
        for n in ("projector.safetensors", "vlm.json", "loss.csv", "encoder.safetensors", "llm")
    }
    assert f"stage2/{CONV}/encoder.safetensors" in names[("stage2_encoder", conv)]
    assert set(names) == {("stage1_encoder", conv), ("stage2_encoder", conv),
                          ("stage1", clip), ("stage2", clip)}  # fmt: skip
    assert not any("encoder.safetensors" in n for n in names[("stage1", clip)])


TABLE = {("benchmarks_table", "")}  # targets: features, embeddings, evaluate
EDITED_CONVLLAVA = {
    # features (the C score's trained encoder), stage 2 and the A score's embeddings load it;
    # stage 2 is retrained, so its evaluation follows
    f"stage1/{CONV}/encoder.safetensors": _per_encoder(
        ["features", "stage2_encoder", "embeddings", "evaluate"], [CONV]
    )
    | TABLE,
    # the LLM stage 1 trained: stage 2 starts from it, the embeddings score with it
    f"stage1/{CONV}/llm": _per_encoder(["stage2_encoder", "embeddings", "evaluate"], [CONV])
    | TABLE,
    # stage 2's carried-along encoder: what lmms-eval's model loads
    f"stage2/{CONV}/encoder.safetensors": _per_encoder(["evaluate"], [CONV]) | TABLE,
}


@pytest.mark.parametrize("name", list(EDITED_CONVLLAVA))
def test_a_newer_convllava_stage_file_reruns_exactly_its_consumers(tmp_path, name):
    """The ConvLLaVA folders' extra files are inputs of the jobs that load them: made newer
    than the rest of a (stand-in) finished run, each plans exactly those jobs and their
    downstream ones under Snakemake's mtime trigger; clip224's jobs stay done."""
    configfile = _convllava_config(tmp_path)
    _stand_in_outputs(configfile)
    assert _planned(configfile, "--rerun-triggers", "mtime") == set()
    path = tmp_path / "results" / "demo" / name
    if not path.exists():  # the stand-ins are the planned outputs: the test above checks it
        path.mkdir() if name.endswith("llm") else path.touch()
    os.utime(path)  # now
    assert _planned(configfile, "--rerun-triggers", "mtime") == EDITED_CONVLLAVA[name]

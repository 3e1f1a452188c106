"""The Snakemake workflow: lint, formatting, dry runs of both configs, config errors at parse
time, and the embedded demo DAG end to end (into a temporary results folder)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import isolate, mark_prepared
from helpers.run import run_snakemake as snakemake
from vislaw.pipeline import load_checked_config

pytestmark = pytest.mark.slow  # the demo DAG end to end

BIN = Path(sys.executable).parent


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def test_lint_is_clean():
    result = snakemake("--lint", "--configfile", "config/demo.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_snakefmt_is_clean():
    files = ["Snakefile", *map(str, sorted((ROOT / "rules").glob("*.smk")))]
    result = subprocess.run(
        [_tool("snakefmt"), "--check", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_is_clean():
    result = subprocess.run([_tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _dry_run_jobs(configfile: Path, *targets: str) -> dict[str, int]:
    """Jobs per rule of a dry run in the config file's own folder (a temporary one: the plan
    must not depend on what the user's runs left in results/)."""
    result = snakemake(
        "-n",
        "--quiet",
        "rules",
        "--configfile",
        str(configfile),
        "--directory",
        str(configfile.parent),
        *targets,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    counts = {}
    for line in (result.stdout + result.stderr).splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_paper_dry_run_has_a_features_job_per_encoder(isolated_config, tmp_path):
    # With its real inputs marked as prepared (config.yaml alone refuses to plan: test_prepare).
    path = isolated_config("config.yaml")
    paper = yaml.safe_load(path.read_text())
    paper["cache"]["hf_home"] = str(tmp_path / "hf")
    path.write_text(yaml.safe_dump(paper, sort_keys=False))
    mark_prepared(path)
    _, specs = load_checked_config(path)
    # config.yaml runs every stage; LMVR's image folder is real data that is not here.
    jobs = _dry_run_jobs(path, "--config", "targets=[features]")
    base = [n for n, s in specs.items() if s.family != "fusion"]
    assert jobs["features"] == len(base)
    assert jobs["fuse_features"] == len(specs) - len(base)
    assert len(specs) >= 16  # the paper's 15 representations plus ConvLLaVA's ConvNeXt


def test_demo_dry_run_plans_every_target(isolated_config):
    config, specs = load_checked_config(ROOT / "config/demo.yaml")
    jobs = _dry_run_jobs(isolated_config("config/demo.yaml"))
    assert jobs["synthetic_data"] == 1
    assert jobs["features"] + jobs.get("fuse_features", 0) == len(specs)


def test_bad_config_fails_before_any_job(tmp_path):
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), tmp_path)
    config["encoders"]["clip224"]["family"] = "vit_magic"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(path), "--directory", str(tmp_path))
    assert result.returncode != 0
    assert "encoders.clip224.family" in result.stdout + result.stderr


def test_demo_dag_end_to_end(full_demo):
    """The README's demo, into a temporary results folder: every target of the demo config
    (conftest's full_demo runs it once, with its report and answer)."""
    path, run_dir = full_demo.config, full_demo.run_dir
    checked, specs = load_checked_config(path)
    from vislaw.encoders.registry import token_grid
    from vislaw.io.hdf5 import read_features

    for name, spec in specs.items():
        feats = read_features(run_dir / "features" / f"{name}.h5")
        rows, cols = token_grid(spec)
        assert feats.features.shape[1] == rows * cols, name
        assert len(feats.ids) == feats.features.shape[0] > 0

    import pandas as pd

    encoders, benchmarks = set(specs), set(checked["benchmarks"])
    c_scores = pd.read_csv(run_dir / "scores" / "c_scores.csv")
    assert set(c_scores["encoder"]) == encoders
    assert c_scores["pck10_image"].nunique() > 1  # families differ
    for table in ("a_scores.csv", "benchmarks.csv", "law_input.csv"):
        frame = pd.read_csv(run_dir / "scores" / table)
        assert set(frame["encoder"]) == encoders, table
        assert set(frame["benchmark"]) == benchmarks, table
    r2 = pd.read_csv(run_dir / "law" / "r2.csv")
    assert r2["benchmark"].tolist() == [*checked["benchmarks"], "mean"]
    assert len(pd.read_csv(run_dir / "law" / "policy.csv")) == len(benchmarks)
    assert (run_dir / "law" / "law.png").stat().st_size > 10_000
    from vislaw.layout import law_figure_files

    for name in law_figure_files(checked["benchmarks"]):  # one figure per benchmark, 3 formats
        assert (run_dir / "law" / name).stat().st_size > 5000, name
    probe = pd.read_csv(run_dir / "lmvr" / "probe.csv")
    assert {"baseline"} < set(probe["features"])  # the encoder baseline and LMVR features
    assert list((run_dir / "lmvr" / "maps").rglob("*.png"))
    assert (run_dir / "report" / "training_curves.png").exists()

    assert full_demo.report.stat().st_size > 100_000

    _same_outputs_without_warm_start(path, run_dir)


def test_demo_ends_with_its_answer(full_demo):
    """`make demo` ends by printing the policy's choice (as recommendation.md states it), the
    law's R² in-sample and leave-one-out as fit_stats.csv holds them, and the report's path."""
    import pandas as pd

    from vislaw.law.fit import LAW_MODEL

    answer, run_dir = full_demo.answer, full_demo.run_dir
    recommendation = (run_dir / "policy" / "recommendation.md").read_text()
    choice = re.search(r"\*\*Choose `([^`]+)`\*\*", recommendation).group(1)
    assert f"Recommended encoder: {choice} (policy `order_ac`" in answer
    n = len(yaml.safe_load(full_demo.config.read_text())["encoders"])
    stats = pd.read_csv(run_dir / "law" / "fit_stats.csv")
    stats = stats[stats["model"] == LAW_MODEL]
    assert (stats["n_encoders"] == n).all() and n >= 8  # every demo encoder: determined
    assert (
        f"on {n} encoders: R² in-sample {stats['r2'].mean():.3f}, "
        f"leave-one-out {stats['loo_r2'].mean():.3f}"
    ) in answer
    assert answer.rstrip().endswith(f"Report: {full_demo.report}")


def _same_outputs_without_warm_start(config_path: Path, run_dir: Path) -> None:
    """The demo ran with warm_start (jobs forked from one preloaded process): rerun a few jobs
    each in its own interpreter and get the same bytes and arrays (vislaw.warm)."""
    from vislaw.io.hdf5 import read_features

    targets = {
        "features": run_dir / "features" / "sd15.h5",
        "c_score": run_dir / "scores" / "c_score" / "clip224.csv",
        "stage1": run_dir / "stage1" / "dinov2" / "projector.safetensors",
    }
    from safetensors import safe_open

    def projector(path: Path) -> tuple[dict, dict]:
        """Tensors and metadata: safetensors writes its metadata map in a per-process order, so
        two runs' files need not be equal byte for byte."""
        with safe_open(path, "pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata()  # noqa: SIM118

    warm_c_score = targets["c_score"].read_bytes()
    warm_tensors, warm_meta = projector(targets["stage1"])
    warm_features = read_features(targets["features"])
    result = snakemake(
        "--cores", "2", "--configfile", str(config_path), "--profile", "profiles/local",
        "--config", "warm_start=False", "-f", *map(str, targets.values()),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert targets["c_score"].read_bytes() == warm_c_score
    cold_tensors, cold_meta = projector(targets["stage1"])
    assert cold_meta == warm_meta
    assert cold_tensors.keys() == warm_tensors.keys()
    assert all((cold_tensors[k] == warm_tensors[k]).all() for k in cold_tensors)
    cold_features = read_features(targets["features"])
    assert cold_features.ids == warm_features.ids
    assert (cold_features.features == warm_features.features).all()


def test_missing_a_score_reference_is_named_when_a_scores_are_planned(tmp_path):
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), tmp_path)
    config["a_score"]["references"] = {"224": "clip_nope"}
    config["targets"] = ["a_score"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    here = ("--configfile", str(path), "--directory", str(tmp_path))
    result = snakemake("-n", *here)
    assert result.returncode != 0
    assert "a_score.references.224" in result.stdout + result.stderr
    config["targets"] = ["c_score"]  # the C score alone does not need the references
    path.write_text(yaml.safe_dump(config))
    assert snakemake("-n", *here).returncode == 0

"""``make plan`` in a fresh checkout with nothing prepared and no conda: every SLURM job of
config.yaml with its resources, the cost table and the missing inputs; a real run of the same
checkout still refuses (issue 24, scope 5)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import ROOT
from helpers.run import run_snakemake
from vislaw.config import load_config
from vislaw.cost import cost_lines
from vislaw.gpu_rules import step_of

pytestmark = pytest.mark.slow  # Snakemake dry runs of config.yaml

BIN = Path(sys.executable).parent


def _fresh_checkout(tmp_path: Path) -> Path:
    for name in ("Snakefile", "config.yaml", "pyproject.toml", "Makefile"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in (
        "rules",
        "workflow_scripts",
        "envs",
        "report",
        "resources",
        "vislaw",
        "profiles",
    ):
        os.symlink(ROOT / folder, tmp_path / folder)
    return tmp_path


def test_make_plan_with_nothing_prepared_and_no_conda(tmp_path):
    checkout = _fresh_checkout(tmp_path)
    path = f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin"
    assert shutil.which("conda", path=path) is None
    env = {k: v for k, v in os.environ.items() if not k.startswith("VISLAW_")}
    env |= {"PATH": path, "PYTHONPATH": str(ROOT), "VISLAW_SLURM_GPU_PARTITION": "gpu"}
    # `make plan` runs this command after `make setup` (not run here: it would pip-install
    # this throw-away checkout into the test's venv)
    make = shutil.which("make")
    if make:
        shown = subprocess.run(
            [make, "-n", "plan", "VENV=venv"], cwd=checkout, capture_output=True, text=True
        ).stdout
        assert "venv/bin/python -m vislaw.plan --config config.yaml" in shown
    result = subprocess.run(
        [sys.executable, "-m", "vislaw.plan", "--config", "config.yaml"],
        cwd=checkout,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    jobs = re.findall(
        r"^\| (\w+) \| ([^|]*) \| (\d+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| (\S+) \|$",
        out,
        re.M,
    )
    config = load_config(ROOT / "config.yaml")
    planned = {}
    for rule, wildcards, _nodes, gpus, _cpus, mem, hours, partition in jobs:
        planned.setdefault(step_of(rule), []).append(  # stage1_encoder: a stage1 job
            (wildcards, int(gpus), float(mem), float(hours), partition)
        )
    # every GPU rule of the cost table, with as many jobs as it counts
    for line in cost_lines(config):
        assert len(planned[line.rule]) == line.jobs, line.rule
        assert {gpus for _, gpus, *_ in planned[line.rule]} == {line.gpus}, line.rule
    stage2 = dict((w, (m, h, p)) for w, _, m, h, p in planned["stage2"])
    assert stage2["encoder=clip336"][0] == 512 and stage2["encoder=clip336"][2] == "gpu"
    assert stage2["encoder=clip336"][1] == 15.0  # 10 h x 1.5 (vislaw.resources)
    assert {p for _, _, _, _, p in planned["check_data"]} == {"$VISLAW_SLURM_PARTITION"}
    assert "| **total** (+54 GB HF cache) | 118 |" in out  # the cost table
    assert "snakemake prepare --configfile config.yaml" in out
    assert "dataset lmms-lab-encoder/MME" in out
    assert not (checkout / "data").exists() and not (checkout / "results").exists()
    # running, as opposed to planning, still refuses
    result = run_snakemake(
        "-n",
        "--configfile",
        "config.yaml",
        cwd=checkout,
        timeout=900,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert result.returncode != 0 and "not prepared" in result.stderr + result.stdout


MISSING = re.compile(
    r"Missing input files for rule (\S+):.*?affected files:\n((?:        .*\n?)+)", re.S
)


def _owned(config, source) -> list[Path]:
    """What a source produces: its ``dest`` folder, or, for one unpacked into data.root itself
    (SPair-71k's archive holds SPair-71k/), the paths of the dataset it feeds."""
    root = Path(config["data"]["root"])
    if source.dest != root:
        return [source.dest]
    section = config["data"].get(source.dataset)
    if not isinstance(section, dict):
        return []
    return [root / v for k, v in section.items() if k in {"root", "json", "image_folder"}]


def test_every_input_of_config_yaml_has_a_rule_or_a_source(tmp_path):
    """Walk config.yaml's DAG with every `prepare` marker in place but no data: each input file
    that no rule produces must lie in a data.sources entry's folder (what `prepare` unpacks);
    one that does not would stop the real run after everything was prepared."""
    from vislaw.pipeline import load_checked_config
    from vislaw.plan import plan_config, write_markers
    from vislaw.prepare.sources import sources

    plan_config(load_config(ROOT / "config.yaml"), tmp_path)
    config, specs = load_checked_config(tmp_path / "plan-config.yaml")
    write_markers(config, specs, tmp_path)
    dests = [(tmp_path / d, name) for name, s in sources(config).items() for d in _owned(config, s)]
    args = ["-n", "--sdm", "env-modules", "--directory", str(tmp_path)]
    args += ["--configfile", str(tmp_path / "plan-config.yaml")]
    for _ in range(8):
        result = run_snakemake(*args, cwd=ROOT, timeout=900, env={"PYTHONPATH": str(ROOT)})
        out = result.stdout + result.stderr
        if result.returncode == 0:
            break
        found = MISSING.search(out)
        assert found, out[-3000:]
        for name in found.group(2).split():
            path = tmp_path / name
            owner = [s for dest, s in dests if path.is_relative_to(dest)]
            assert owner, f"rule {found.group(1)} reads {name}: no rule and no data.sources entry"
            (path.parent if path.suffix else path).mkdir(parents=True, exist_ok=True)
            if path.suffix:
                path.write_text("[]")
    assert result.returncode == 0, out[-3000:]
    assert "lmvr_probe" in out  # the LMVR target is planned


def test_plan_placeholders_never_touch_real_data(tmp_path):
    """A config whose data live at absolute paths: the plan's placeholders stay in its folder
    (an earlier version wrote `[]` over the real JSON)."""
    from vislaw.plan import plan_config, write_placeholders

    real = tmp_path / "real"
    real.mkdir()
    (real / "pretrain.json").write_text('["keep"]')
    config = load_config(ROOT / "config.yaml")
    config["data"]["pretrain"] = {"json": str(real / "pretrain.json"), "image_folder": "../imgs"}
    config["lmvr"]["image_folder"] = str(real / "lmvr")
    folder = tmp_path / "plan"
    folder.mkdir()
    plan_config(config, folder)
    write_placeholders(folder / "plan-config.yaml", folder)
    assert (real / "pretrain.json").read_text() == '["keep"]'
    assert sorted(p.name for p in real.iterdir()) == ["pretrain.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan", "real"]
    assert (folder / "data" / "LLaVA-Instruct" / "llava_v1_5_mix665k.json").read_text() == "[]"

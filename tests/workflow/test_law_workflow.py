"""The paper reproduction through Snakemake: `config/paper_v1.yaml` plans one `law` job and
writes every output of the law from the shipped table (into a temporary results folder)."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.paths import ROOT
from helpers.run import run_snakemake
from vislaw.law.report import R2_COLUMNS
from vislaw.law.simulate import COLUMNS, PROTOCOLS, SIMULATED
from vislaw.law.tables import PAPER_ENCODERS
from vislaw.layout import LAW_FILES, law_figure_files
from vislaw.pipeline import load_checked_config

pytestmark = pytest.mark.slow  # Snakemake runs of the law


def test_paper_v1_config_names_the_tables_encoders():
    config, specs = load_checked_config(ROOT / "config/paper_v1.yaml")
    assert config["targets"] == ["law"]
    assert config["law"]["table_format"] == "paper_v1"
    assert (ROOT / config["law"]["scores_table"]).is_file()
    assert set(PAPER_ENCODERS.values()) <= set(specs)


def test_paper_v1_reproduces_the_law(tmp_path):
    args = ["--configfile", "config/paper_v1.yaml", "--config", f"results_dir={tmp_path}"]
    dry = run_snakemake("-n", *args, timeout=600)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "law" in dry.stdout

    run = run_snakemake("--cores", "1", *args, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    out = tmp_path / "paper_v1" / "law"
    for name in LAW_FILES:
        assert (out / name).stat().st_size > 0, name
    config, _ = load_checked_config(ROOT / "config/paper_v1.yaml")
    for name in law_figure_files(config["benchmarks"]):  # declared rule outputs, one per benchmark
        assert (out / name).stat().st_size > 5000, name
    r2 = pd.read_csv(out / "r2.csv")
    assert tuple(r2.columns) == R2_COLUMNS
    assert len(r2) == 9  # 8 benchmarks + mean
    strategies = pd.read_csv(out / "policy_strategies.csv")  # law.strategies: true
    assert tuple(strategies.columns) == COLUMNS
    assert set(strategies["protocol"]) == set(PROTOCOLS)
    assert set(strategies["strategy"]) == set(SIMULATED)
    log = (tmp_path / "paper_v1" / "logs" / "law.log").read_text()
    assert "dinov2_336" in log  # the fusion helper has no scores of its own, and says so

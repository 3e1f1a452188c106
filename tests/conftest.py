"""Shared fixtures: a minimal valid config, the demo's data and run, and thread limits for the
2-core CI machine. Functions the tests call live in tests/helpers/ (no test imports this file);
the module fixtures of tiny stage folders are registered from helpers.fixtures."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.paths import ROOT
from helpers.run import isolate, run_snakemake

pytest_plugins = ["helpers.fixtures"]

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


MINIMAL_CONFIG = {
    "run": "unit",
    "encoders": {
        "clip224": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14},
        "clip_b": {"family": "clip", "model_id": "openai/clip-vit-base-patch16", "input_size": 224},
    },
    "data": {"root": "data", "spair": {"root": "SPair-71k"}},
}


@pytest.fixture(autouse=True)
def _restore_environment():
    """Undo environment changes a test makes in-process: DeepSpeed's init sets MASTER_PORT,
    RANK, WORLD_SIZE and LOCAL_RANK, which would make later subprocesses (the demo DAG's
    lmms-eval jobs) believe they are ranks of a distributed run."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Undo torch's process-wide settings a test changes in-process: entry points called in
    the test's process set the thread count (vislaw.jobs.apply_runtime_settings), which makes
    later bit-for-bit comparisons with a subprocess differ; a disabled grad mode would break
    every training test after it. Looked up only when a test has imported torch."""
    torch = sys.modules.get("torch")
    # Not imported yet: what a fresh process starts with (torch reads OMP_NUM_THREADS, set above).
    saved = (
        (torch.get_num_threads(), torch.is_grad_enabled())
        if torch
        else (int(os.environ["OMP_NUM_THREADS"]), True)
    )
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(saved[0])
        torch.set_grad_enabled(saved[1])


@pytest.fixture
def minimal_config() -> dict:
    return copy.deepcopy(MINIMAL_CONFIG)


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture
def isolated_config(tmp_path):
    """Write a shipped config (path relative to the repository), isolated under tmp_path and
    updated with ``changes``, to a file; returns its path. Run Snakemake on it with
    ``--directory tmp_path`` so that its .snakemake/ state stays there too."""

    def write(name: str, **changes) -> Path:
        import yaml

        config = isolate(yaml.safe_load((ROOT / name).read_text()), tmp_path)
        config.update(changes)
        path = tmp_path / Path(name).name
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


# ---- the demo's synthetic data, for the data checks (test_data_check, test_bad_images) --------
@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    import yaml

    from vislaw.config import check_config
    from vislaw.data.synthetic import generate_from_config

    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["data"]["root"] = str(tmp_path_factory.mktemp("demo") / "data")
    config = check_config(config)
    generate_from_config(config)
    return config


@pytest.fixture
def spair_config(demo_data, tmp_path):
    root = Path(demo_data["data"]["root"]) / demo_data["data"]["spair"]["root"]
    shutil.copytree(root, tmp_path / "SPair-71k")
    return {**demo_data, "data": {**demo_data["data"], "root": str(tmp_path)}}


# ---- the whole demo, run once per session (test_workflow, test_report) -----------------------
@dataclass(frozen=True)
class DemoRun:
    """What `make demo` leaves: the config it ran, the run folder, the report, the answer."""

    config: Path
    run_dir: Path
    report: Path
    answer: str


@pytest.fixture(scope="session")
def full_demo(tmp_path_factory) -> DemoRun:
    """The README's demo as `make demo` runs it (the DAG, `make report`, the answer), into a
    temporary results folder: one run serves every test that reads its outputs."""
    import yaml

    folder = tmp_path_factory.mktemp("demo_run")
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["results_dir"] = str(folder / "results")
    config["data"]["root"] = str(folder / "results" / "demo" / "data")
    path = folder / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    # ~4 min on an idle 2-core machine; a shared one took over 15 (900 s timed out)
    result = run_snakemake(
        "--cores", "2", "--configfile", str(path), "--profile", "profiles/local", timeout=3600
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    run_dir = folder / "results" / "demo"
    report = Path(_cli("vislaw.law.answer", "--config", str(path), "--report-path").strip())
    assert report == run_dir / "report.html"
    result = run_snakemake("--configfile", str(path), "--report", str(report))
    assert result.returncode == 0, result.stderr[-4000:]
    answer = _cli("vislaw.law.answer", "--config", str(path))
    return DemoRun(config=path, run_dir=run_dir, report=report, answer=answer)


def _cli(module: str, *args: str) -> str:
    """A ``python -m`` entry point's stdout (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout

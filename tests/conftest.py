"""Shared fixtures: a minimal valid config, and thread limits for the 2-core CI machine."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DELETE = object()
"""A value for :func:`with_key`: remove the key instead of setting it."""

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


def isolate(config: dict, folder: Path) -> dict:
    """``config`` with every output under ``folder``: results_dir, and data.root when it is
    relative (the demo writes its synthetic data under results/). Tests never read or touch
    what the user's own runs left in the checkout's results/ (issue 16, class 7)."""
    config = copy.deepcopy(config)
    config["results_dir"] = str(folder / "results")
    root = config.get("data", {}).get("root")
    if root and not Path(root).is_absolute():
        config["data"]["root"] = str(folder / root)
    return config


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


def with_key(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set to ``value`` (:data:`DELETE` removes
    the key); parents are created as needed. Keys that hold dots: separate them with '|'."""
    config = copy.deepcopy(config)
    node = config
    keys = path.split("|") if "|" in path else path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return config


def run_snakemake(
    *args: str, cwd: Path = ROOT, timeout: int = 900, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Snakemake from this venv, with the venv first on PATH (sbatch --export=ALL hands that PATH
    to SLURM jobs, which is how they find this Python on a cluster without conda); ``env``
    adds variables, and removes those it maps to None (this process sets HF_HUB_OFFLINE=1
    above: a run that must look like a user's shell without it says so)."""
    exe = BIN / "snakemake"
    merged = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
    return subprocess.run(
        [str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={name: value for name, value in merged.items() if value is not None},
    )


def mark_prepared(config_path: Path, workdir: Path | None = None) -> None:
    """Write `prepare`'s markers (data sources, Hub repos) of a config, without which a real
    config refuses to plan; relative markers resolve in ``workdir`` (the run's --directory)."""
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare.sources import sources, write_stand_in
    from vislaw.prepare.status import all_requirements

    checked, specs = load_checked_config(config_path)
    for req in all_requirements(checked, specs):
        marker = (workdir / req.marker) if workdir else req.marker
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
    for source in sources(checked).values():  # a data marker is trusted only when it verifies
        write_stand_in(source, workdir)


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

"""The one launcher (vislaw.ranks): the run's config file, saved calls, per-GPU ranks, and the
torchrun/accelerate command lines. Several real ranks training or encoding together:
tests/unit/core/test_multirank.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import ROOT
from vislaw.config import check_config, load_config
from vislaw.ranks import (
    accelerate_command,
    call_file,
    rank_program,
    run_call_on_gpus,
    run_config_file,
    run_launcher,
    run_on_gpus,
)


def _config(tmp_path: Path, **extra) -> dict:
    return check_config(
        {
            "run": "r",
            "results_dir": str(tmp_path / "results"),
            "device": "cpu",
            "encoders": {
                "clip_t": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}
            },
            "data": {"root": str(tmp_path / "data")},
            **extra,
        }
    )


def test_the_runs_config_file_is_written_once_and_read_back(tmp_path):
    """One file per run and config content under the run folder: a second call (another job)
    finds it and does not touch it; a changed config gets its own file, the first untouched."""
    config = _config(tmp_path)
    path = run_config_file(config)
    assert path.parent == tmp_path / "results" / "r" / ".run_config"
    assert load_config(path) == load_config(run_config_file(load_config(path)))
    os.utime(path, (1_000_000, 1_000_000))
    assert run_config_file(config) == path
    assert path.stat().st_mtime == 1_000_000  # unchanged content: not rewritten
    other = run_config_file(_config(tmp_path, seed=7))
    assert other != path and other.parent == path.parent
    assert load_config(other)["seed"] == 7 and load_config(path)["seed"] != 7
    assert path.stat().st_mtime == 1_000_000


def test_each_rank_sees_one_gpu_of_the_job_and_a_failing_rank_is_named(tmp_path, monkeypatch):
    """Rank r gets GPU r of the job's CUDA_VISIBLE_DEVICES; the error names the failed rank,
    its exit code and what it ran, not the ranks that succeeded."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    show = "import os, sys; open(sys.argv[1], 'w').write(os.environ['CUDA_VISIBLE_DEVICES'])"
    run_on_gpus([[sys.executable, "-c", show, str(tmp_path / f"r{r}")] for r in (0, 1)], "gpus")
    assert [(tmp_path / f"r{r}").read_text() for r in (0, 1)] == ["5", "7"]
    commands = [[sys.executable, "-c", "pass"], [sys.executable, "-c", "raise SystemExit(3)"]]
    with pytest.raises(RuntimeError) as err:
        run_on_gpus(commands, "features of clip_t")
    message = str(err.value)
    assert message.startswith("features of clip_t: rank(s) [1] of 2 failed")
    assert "rank 1 (exit 3)" in message and "SystemExit(3)" in message
    assert "rank 0 (" not in message


def test_saved_calls_run_in_rank_processes_and_are_removed(tmp_path):
    """A call saved as JSON runs in each rank (python -m vislaw.ranks FILE); a rank whose call
    fails is named; the call files are gone afterwards, also after the failure."""
    (tmp_path / "src").write_text("hello")
    calls = [{"src": str(tmp_path / "src"), "dst": str(tmp_path / f"dst{r}")} for r in (0, 1)]
    run_call_on_gpus("shutil:copyfile", calls, tmp_path / "calls", "copy")
    assert [(tmp_path / f"dst{r}").read_text() for r in (0, 1)] == ["hello", "hello"]
    calls[1]["src"] = str(tmp_path / "missing")
    with pytest.raises(RuntimeError, match=r"copy: rank\(s\) \[1\] of 2 failed"):
        run_call_on_gpus("shutil:copyfile", calls, tmp_path / "calls", "copy")
    assert not list((tmp_path / "calls").iterdir())


def test_launchers_run_the_saved_call_and_name_what_failed(tmp_path):
    """torchrun and accelerate run the same rank program; run_launcher names what failed."""
    with call_file("shutil:copyfile", {"src": "a", "dst": "b"}, tmp_path, "copy") as path:
        command = accelerate_command(rank_program(path), 2)
        assert command[1:3] == ["-m", "accelerate.commands.launch"]
        assert "--num_processes=2" in command and "--multi_gpu" in command
        assert command[-3:] == ["-m", "vislaw.ranks", str(path)]
    assert not path.exists()
    with pytest.raises(RuntimeError, match="stage 1 of clip_t: exit 4 from "):
        run_launcher([sys.executable, "-c", "raise SystemExit(4)"], "stage 1 of clip_t")


def test_a_rank_program_runs_as_a_module(tmp_path):
    with call_file(
        "shutil:copyfile", {"src": __file__, "dst": str(tmp_path / "c")}, tmp_path, "c"
    ) as path:
        done = subprocess.run(
            [sys.executable, *rank_program(path)], cwd=ROOT, capture_output=True, text=True
        )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "c").read_text() == Path(__file__).read_text()

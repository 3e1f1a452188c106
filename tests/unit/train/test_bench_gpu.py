"""benchmarks/bench_gpu.py: refuses clearly without CUDA; its --tiny mode runs the same code
(DeepSpeed ZeRO-2 stage 1, ZeRO-3 stage 2, optimizer steps) on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from helpers.paths import ROOT

pytestmark = pytest.mark.slow  # the GPU benchmark's tiny run, both training stages

SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900, env=env
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here: the script would run")
def test_bench_gpu_refuses_without_cuda():
    result = _run("--steps", "1")
    assert result.returncode == 2
    assert "needs a CUDA GPU" in result.stderr and "--tiny" in result.stderr


def test_bench_gpu_tiny_runs_both_stages(tmp_path):
    out = tmp_path / "bench.json"
    result = _run("--tiny", "--steps", "1", "--json", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [row["stage"] for row in rows] == [1, 2]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["projected_hours_1_gpu"] > 0, row
        assert row["projected_hours_8_gpus"] == pytest.approx(
            row["projected_hours_1_gpu"] / 8, abs=0.1
        )

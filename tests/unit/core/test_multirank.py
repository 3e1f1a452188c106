"""Several ranks on one CPU machine (gloo), as on a GPU node (select with ``pytest -k multirank``).

Stage 1 with 2 ranks, plain data parallel (DeepSpeed ZeRO-0) and ZeRO-2 and ZeRO-3, gives the
loss curve of 1 plain process at the same global batch; two torchrun agents meeting in a c10d
rendezvous on localhost (the multi-node launch of vislaw.train.launch, without srun) give it
too. Tolerance: the per-step losses agree to 1e-4 relative (fp32; the ranks' gradient
all-reduce sums in another order than one process's accumulation).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.paths import ROOT, TESTS
from vislaw.config import write_run_config
from vislaw.io.ports import free_port
from vislaw.ranks import call_file, rank_program, torchrun_command
from vislaw.train.launch import STAGE_TARGET, stage_call

pytestmark = pytest.mark.slow  # several ranks under torchrun, DeepSpeed and accelerate

TOLERANCE = 1e-4
STEPS = 3
ZEROS = ["zero0", "zero2", "zero3"]


def _losses(folder: Path) -> list[float]:
    with (folder / "loss.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    }
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return env


def _config(base: dict, tmp: Path, deepspeed: str | None) -> Path:
    """The run's config with 2 samples per rank per step and a global batch of 4."""
    stage = {
        "max_steps": STEPS,
        "save_steps": 100,
        "per_device_batch": 2,
        "global_batch": 4,
        "deepspeed": deepspeed,
    }
    config = {
        **base,
        "train": {
            **base["train"],
            "use_deepspeed": "always" if deepspeed else "never",
            "stage1": {**base["train"]["stage1"], **stage},
        },
    }
    path = tmp / f"config-{Path(deepspeed).stem if deepspeed else 'single'}.yaml"
    write_run_config(config, path)  # as ranks.run_config_file writes it for the ranks
    return path


def _run(commands: list[list[str]], timeout: int = 240) -> None:
    """Start every command at once (the agents of one rendezvous) and wait for all."""
    procs = [
        subprocess.Popen(
            c, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for c in commands
    ]
    outs = [p.communicate(timeout=timeout)[0] for p in procs]
    for proc, out in zip(procs, outs, strict=True):
        assert proc.returncode == 0, out[-4000:]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    from helpers.train_runs import setup_run

    return setup_run(tmp_path_factory.mktemp("multirank"))


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory) -> list[float]:
    """1 process, plain PyTorch, the same global batch by gradient accumulation (in-process:
    no process group, nothing leaks)."""
    from vislaw.config import load_config
    from vislaw.train.runner import train_stage

    tmp = tmp_path_factory.mktemp("single")
    out = train_stage(load_config(_config(base, tmp, None)), 1, "clip_t", tmp / "s1")
    losses = _losses(Path(out))
    assert len(losses) == STEPS
    return losses


@pytest.fixture(scope="module")
def two_ranks(base, tmp_path_factory) -> dict[str, Path]:
    """One torchrun with 2 ranks trains stage 1 under ZeRO-0 (plain data parallel), ZeRO-2 and
    ZeRO-3 in turn (tests/helpers/multirank_driver.py: one start for the three)."""
    tmp = tmp_path_factory.mktemp("two_ranks")
    outs = {zero: tmp / zero for zero in ZEROS}
    pairs = [f"{_config(base, tmp, f'resources/deepspeed/{z}.json')}={outs[z]}" for z in ZEROS]
    driver = str(TESTS / "helpers" / "multirank_driver.py")
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    _run([[*torchrun, "--nproc_per_node=2", driver, *pairs]])
    return outs


def _assert_same_curve(got: list[float], want: list[float]) -> None:
    assert len(got) == len(want) == STEPS
    for step, (a, b) in enumerate(zip(got, want, strict=True), 1):
        assert abs(a - b) <= TOLERANCE * abs(b), f"step {step}: {a} vs {b} (1 rank)"


@pytest.mark.parametrize("zero", ZEROS)
def test_multirank_stage1_two_ranks_match_one(zero, two_ranks, reference):
    out = two_ranks[zero]
    _assert_same_curve(_losses(out), reference)
    info = json.loads((out / "vlm.json").read_text())
    assert info["training"]["deepspeed_zero_stage"] == int(zero[-1])
    assert info["training"].get("world_size", 2) == 2


def test_multirank_two_node_rendezvous_on_localhost(base, reference, tmp_path):
    config = _config(base, tmp_path, "resources/deepspeed/zero2.json")
    out = tmp_path / "s1"
    endpoint = f"127.0.0.1:{free_port()}"
    with call_file(STAGE_TARGET, stage_call(config, 1, "clip_t", out), tmp_path, "s1") as call:
        agent = torchrun_command(
            rank_program(call), 1, nodes=2, rdzv_endpoint=endpoint, rdzv_id="multirank-test"
        )
        assert "--standalone" not in agent and "--nnodes=2" in agent
        _run([agent, agent])  # two "nodes", one rank each
    _assert_same_curve(_losses(out), reference)


def test_multirank_training_job_launches_ranks_on_the_runs_config_file(
    base, reference, tmp_path, monkeypatch
):
    """The training job's own launch (run_train_stage with 2 "GPUs": torchrun of the saved
    call, gloo on the CPU) reads the run's one config file and leaves no copy or call behind."""
    from vislaw.config import load_config
    from vislaw.ranks import run_config_file
    from vislaw.train.launch import run_train_stage

    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    config = load_config(_config(base, tmp_path, "resources/deepspeed/zero0.json"))
    out = run_train_stage(config, 1, "clip_t", tmp_path / "s1", gpus=2)
    _assert_same_curve(_losses(out), reference)
    assert run_config_file(config).is_file()
    assert not list(out.glob(".vislaw-call-*")) and not (out / "run_config.yaml").exists()


# --- evaluation: lmms-eval under accelerate launch -------------------------------------------
@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    """test_eval's tiny stage-2 model (overfitted to name each square's colour) and its two
    local tasks (multiple choice and generation, 3 questions: uneven over 2 ranks)."""
    from helpers.colour_bench import GEN, MC, write_set, write_stage2
    from vislaw.eval.local_tasks import write_task_folder

    sets = write_set(tmp_path_factory.mktemp("sets") / "colours")
    tasks = tmp_path_factory.mktemp("tasks")
    write_task_folder(sets, tasks, MC.task)
    write_task_folder(sets, tasks, GEN.task, output_type="generate_until")
    stage2 = write_stage2(tmp_path_factory.mktemp("model"))
    return stage2, tasks, [MC, GEN]


def _evaluate(eval_inputs, out: Path, processes: int) -> dict[str, list]:
    from vislaw.eval.launch import evaluate_benchmarks
    from vislaw.eval.results import benchmark_rows

    stage2, tasks, benchmarks = eval_inputs
    outputs = {b.name: out / f"{b.name}.json" for b in benchmarks}
    samples = {b.name: out / f"{b.name}.samples.jsonl" for b in benchmarks}
    env = _env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        evaluate_benchmarks(
            stage2,
            benchmarks,
            outputs,
            include_path=tasks,
            max_new_tokens=8,
            batch_size=2,
            samples=samples,
            processes=processes,
        )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    scores = {
        b.name: [r.score for r in benchmark_rows("m", b, outputs[b.name])] for b in benchmarks
    }
    answers = {
        b.name: sorted(
            (json.loads(line)["doc_id"], json.dumps(json.loads(line)["filtered_resps"]))
            for line in samples[b.name].read_text().splitlines()
        )
        for b in benchmarks
    }
    return {"scores": scores, "answers": answers}


def test_multirank_evaluation_two_processes_match_one(eval_inputs, tmp_path):
    one = _evaluate(eval_inputs, tmp_path / "one", 1)
    two = _evaluate(eval_inputs, tmp_path / "two", 2)
    assert two["scores"] == one["scores"]
    assert two["answers"] == one["answers"]  # every question answered once, as alone
    assert all(len(v) == 3 for v in two["answers"].values())


# --- features: the images split across ranks --------------------------------------------------
def test_multirank_features_two_ranks_match_one(tmp_path):
    """Two --shard processes merged give the one-process file: same ids in the same order,
    same features."""
    import numpy as np
    from PIL import Image

    from vislaw.features import extract_features_on_ranks
    from vislaw.features.cli import main
    from vislaw.io.hdf5 import read_features

    folder = tmp_path / "data" / "SPair-71k" / "JPEGImages"
    rng = np.random.default_rng(0)
    for category in ("bird", "cat"):
        (folder / category).mkdir(parents=True)
        for i in range(3 if category == "bird" else 2):  # 5 images: uneven over 2 ranks
            pixels = rng.integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / category / f"{i}.jpg")
    config = {
        "run": "mr",
        "results_dir": str(tmp_path / "results"),
        "device": "cpu",
        "encoders": {
            "clip_t": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}
        },
        "data": {"root": str(tmp_path / "data"), "spair": {"root": "SPair-71k"}},
        "features": {"batch_size": 2, "dtype": "float32"},
    }
    path = tmp_path / "config.yaml"
    write_run_config(config, path)
    main(["--config", str(path), "--encoder", "clip_t", "--out", str(tmp_path / "one.h5")])
    extract_features_on_ranks(path, "clip_t", tmp_path / "two.h5", 2, threads=1)
    one, two = read_features(tmp_path / "one.h5"), read_features(tmp_path / "two.h5")
    assert two.ids == one.ids and len(one.ids) == 5
    np.testing.assert_allclose(two.features, one.features, rtol=1e-5, atol=1e-6)
    assert not list(tmp_path.glob("two.rank*"))  # shards removed after the merge


# --- embeddings (A score): images and captions split across ranks -----------------------------
def test_multirank_embeddings_two_ranks_match_one(tmp_path):
    """Two processes merged give the one-process embeddings (same ids and order) and the same
    caption log-likelihood (the mean over every caption)."""
    import numpy as np

    from helpers.llava_samples import draw, train_config
    from helpers.tiny_vlm import write_stage1
    from vislaw.config import check_config
    from vislaw.io.hdf5 import read_features
    from vislaw.scores.a_images import write_sample
    from vislaw.scores.embeddings import (
        CaptionSource,
        EmbeddingPaths,
        embedding_job,
        embedding_job_on_ranks,
    )
    from vislaw.scores.settings import AScoreSettings

    stage1 = write_stage1(tmp_path / "a")
    config = train_config(tmp_path / "run")
    config["benchmarks"] = ["mme"]
    config["a_score"] = {"n_images": 3, "n_captions": 5, "batch_size": 2, "dtype": "float32"}
    config = check_config(config)
    items = []
    for i, colour in enumerate(["red", "blue", "green"]):
        draw(colour, "square").save(tmp_path / f"{i}.png")
        items.append({"id": f"img{i}", "path": str(tmp_path / f"{i}.png")})
    write_sample(tmp_path / "mme.json", "mme", 0, items)
    samples = {"mme": tmp_path / "mme.json"}
    one = {"mme": tmp_path / "one" / "mme.h5"}
    embedding_job(
        AScoreSettings.from_config(config),
        paths=EmbeddingPaths(stage1, samples, one, tmp_path / "one" / "loglik.json"),
        captions=CaptionSource.from_config(config),
    )
    path = tmp_path / "config.yaml"
    write_run_config(config, path)
    two = {"mme": tmp_path / "two" / "mme.h5"}
    paths = EmbeddingPaths(stage1, samples, two, tmp_path / "two" / "loglik.json")
    embedding_job_on_ranks(path, paths=paths, processes=2)
    a, b = read_features(one["mme"]), read_features(two["mme"])
    assert b.ids == a.ids == ["img0", "img1", "img2"]
    np.testing.assert_allclose(b.features, a.features, rtol=1e-5, atol=1e-6)
    la = json.loads((tmp_path / "one" / "loglik.json").read_text())
    lb = json.loads((tmp_path / "two" / "loglik.json").read_text())
    assert lb["n_captions"] == la["n_captions"] == 5
    assert lb["a_loglik"] == pytest.approx(la["a_loglik"], abs=1e-5)
    assert not list((tmp_path / "two").glob("*rank*"))

"""``prepare`` against a loopback Hub (tests/helpers/loopback_hub.py): huggingface_hub's own
download code (``snapshot_download``: revision info, tree, ``resolve`` with ETags and commit
headers, Range resume, gated 401s) runs unmodified in a ``python -m vislaw.prepare`` subprocess
whose ``HF_ENDPOINT`` points at 127.0.0.1; what it leaves in ``cache.hf_home`` then loads offline
through the real loading code (the encoder families' ``from_pretrained``, and
``datasets.load_dataset`` called as lmms-eval calls it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.hub_twins import write_twin
from helpers.loopback_hub import LoopbackHub, publish_benchmark_datasets, publish_encoder_twins
from helpers.paths import ROOT
from vislaw.pipeline import load_checked_config

pytestmark = pytest.mark.slow  # prepare against the loopback Hub, every repo of config.yaml

CLIP = "openai/clip-vit-base-patch16"


def _config(tmp_path: Path, **extra) -> Path:
    """A config with one real-id CLIP encoder and ``cache.hf_home`` under ``tmp_path``."""
    config = {
        "run": "loopback",
        "results_dir": str(tmp_path / "results"),
        "encoders": {
            "clip_b": {"family": "clip", "model_id": CLIP, "input_size": 224, "patch_size": 16}
        },
        "data": {"root": str(tmp_path / "data"), "spair": {"root": "SPair-71k"}},
        "cache": {"hf_home": str(tmp_path / "hf")},
        "llm": {"tiny": True},  # the LLM's own repo is not what these tests serve
        "targets": ["features"],
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell, with no Hub setting of the test process leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    # HF_HOME is the user's own, not cache.hf_home: prepare must write to the latter itself.
    env.update(PYTHONPATH=str(ROOT), HF_HUB_DISABLE_TELEMETRY="1")
    env.update({"HF_HOME": str(tmp_path / "user-home"), **extra})
    return env


def _prepare(hub: LoopbackHub, tmp_path: Path, *args: str, **env: str):
    return subprocess.run(
        [sys.executable, "-m", "vislaw.prepare", *args],
        env=_env(tmp_path, HF_ENDPOINT=hub.endpoint, **env),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )


def _marker(tmp_path: Path, repo_id: str, repo_type: str = "model") -> Path:
    return tmp_path / "hf" / "vislaw-prepared" / f"{repo_type}--{repo_id.replace('/', '--')}.json"


def _spec(config_path: Path, name: str):
    return load_checked_config(str(config_path))[1][name]


LOAD_ENCODER = """
import json, sys
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder
encoder = build_encoder(EncoderSpec(**json.loads(sys.argv[1])))
params = list(encoder.model.parameters())
print(json.dumps({"params": sum(p.numel() for p in params),
                  "checksum": float(sum(p.double().sum() for p in params)),
                  "hidden": encoder.model.config.hidden_size}))
"""


def _load_offline(tmp_path: Path, spec) -> dict:
    """Build ``spec`` through its family's real loading code, offline, from cache.hf_home."""
    attrs = {k: v for k, v in spec.to_attrs().items() if k not in ("members", "tiny")}
    env = _env(tmp_path, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    done = subprocess.run(
        [sys.executable, "-c", LOAD_ENCODER, json.dumps(attrs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


LOAD_ENCODERS = """
import json, sys
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder
for attrs in json.loads(sys.argv[1]):
    build_encoder(EncoderSpec(**attrs))
    print("LOADED", attrs["name"], flush=True)
"""


def test_every_encoder_repo_of_config_yaml_is_prepared_and_loads_offline(tmp_path):
    """config.yaml's encoders: a twin of each real repo id in its real layout (diffusers
    subfolders included, SD3 gated as on the Hub); prepare fetches only the files its
    allow_patterns name, and each family's loading code builds the encoder from them."""
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    config = _config(tmp_path, encoders=paper["encoders"], benchmarks=[])
    specs = load_checked_config(str(config))[1]
    with LoopbackHub(tmp_path / "server") as hub:
        hub.tokens.add("hf_accepted")
        published = publish_encoder_twins(hub, specs, tmp_path / "twins")
        done = _prepare(hub, tmp_path, "models", "--config", str(config), HF_TOKEN="hf_accepted")
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(published) == 14  # every distinct encoder repo of config.yaml
    for name, (repo_id, sha) in published.items():
        marker = json.loads(_marker(tmp_path, repo_id).read_text())
        assert marker["commit"] == sha, repo_id
        snapshot = tmp_path / "hf" / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        for file in marker["files"]:
            assert (snapshot / sha / file).read_bytes() == (
                tmp_path / "twins" / name / file
            ).read_bytes()
    assert not (tmp_path / "user-home" / "hub").exists()  # everything went to cache.hf_home
    # huggingface_hub's own path: revision info, tree listing, a HEAD per file before its GET
    clip, sha = published["clip224"]
    paths = [(method, path.split("?")[0]) for method, path, _ in hub.requests]
    assert ("GET", f"/api/models/{clip}/revision/main") in paths
    assert ("GET", f"/api/models/{clip}/tree/{sha}") in paths
    assert ("HEAD", f"/{clip}/resolve/{sha}/config.json") in paths
    assert ("GET", f"/{clip}/resolve/{sha}/config.json") in paths
    assert ("GET", f"/{clip}/{sha}/model.safetensors") in paths  # an LFS file, from the "CDN"
    attrs = [
        {k: v for k, v in spec.to_attrs().items() if k not in ("members", "tiny")}
        for spec in specs.values()
        if spec.family != "fusion"
    ]
    env = _env(tmp_path, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_ENCODERS, json.dumps(attrs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    names = [line.split()[1] for line in loaded.stdout.splitlines() if line.startswith("LOADED")]
    assert names == [a["name"] for a in attrs]


def test_hub_data_sources_of_config_yaml_are_fetched_through_huggingface_hub(tmp_path):
    """config.yaml's LLaVA-Pretrain sources (``hub: {repo, file}``: a JSON and an image zip
    in a dataset repo) through hf_hub_download against the loopback Hub, then unpacked."""
    import zipfile

    paper = yaml.safe_load((ROOT / "config.yaml").read_text())["data"]
    names = ["llava_pretrain_json", "llava_pretrain_images"]
    repo_id = paper["sources"][names[0]]["hub"]["repo"]
    folder = tmp_path / "repo"
    folder.mkdir()
    rows = [{"id": "000000012", "image": "00000/000000012.jpg", "conversations": []}]
    (folder / paper["sources"][names[0]]["hub"]["file"]).write_text(json.dumps(rows))
    with zipfile.ZipFile(folder / paper["sources"][names[1]]["hub"]["file"], "w") as archive:
        archive.writestr("00000/000000012.jpg", b"\xff\xd8 not decoded here")
    data = {
        **paper,
        "root": str(tmp_path / "data"),
        "sources": {n: paper["sources"][n] for n in names},
    }
    config = _config(tmp_path, data=data)
    with LoopbackHub(tmp_path / "server") as hub:
        sha = hub.publish(repo_id, folder, repo_type="dataset")
        done = _prepare(hub, tmp_path, "data", "--config", str(config))
        cdn = [path for method, path, _ in hub.requests if method == "GET" and sha in path]
    assert done.returncode == 0, done.stderr[-3000:]
    root = tmp_path / "data"
    assert json.loads((root / "LLaVA-Pretrain" / "blip_laion_cc_sbu_558k.json").read_text()) == rows
    assert (root / "LLaVA-Pretrain" / "images" / "00000" / "000000012.jpg").is_file()
    assert any(path.endswith("images.zip") and "/resolve/" not in path for path in cdn)
    hub_cache = tmp_path / "hf" / "hub" / f"datasets--{repo_id.replace('/', '--')}" / "snapshots"
    assert (hub_cache / sha / "blip_laion_cc_sbu_558k.json").is_file()  # in cache.hf_home


# ---- a pinned revision ------------------------------------------------------------------------
def _shifted(twin: Path, folder: Path) -> None:
    """A second commit of the twin: the same files, every weight + 1 (other bytes, same shape)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(twin, folder)
    tensors = load_file(twin / "model.safetensors")
    save_file({k: v + 1 for k, v in tensors.items()}, folder / "model.safetensors")


def test_a_pinned_revision_fetches_that_commit_not_main(tmp_path):
    spec = _spec(_config(tmp_path), "clip_b")
    write_twin(tmp_path / "old", spec)
    _shifted(tmp_path / "old", tmp_path / "new")
    with LoopbackHub(tmp_path / "server") as hub:
        old = hub.publish(CLIP, tmp_path / "old")
        new = hub.publish(CLIP, tmp_path / "new")  # main moves on
        config = _config(
            tmp_path, cache={"hf_home": str(tmp_path / "hf"), "revisions": {CLIP: old}}
        )
        done = _prepare(hub, tmp_path, "models", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    assert old != new
    assert json.loads(_marker(tmp_path, CLIP).read_text())["commit"] == old
    repo = tmp_path / "hf" / "hub" / f"models--{CLIP.replace('/', '--')}"
    assert sorted(p.name for p in (repo / "snapshots").iterdir()) == [old]
    assert (repo / "refs" / "main").read_text() == old  # offline jobs resolve main
    weights = (repo / "snapshots" / old / "model.safetensors").read_bytes()
    assert weights == (tmp_path / "old" / "model.safetensors").read_bytes()
    assert not any(new in path for _, path, _ in hub.requests)  # main's commit never fetched
    loaded = _load_offline(tmp_path, spec)
    assert loaded["checksum"] == pytest.approx(_checksum(tmp_path / "old"), rel=1e-5)


def _checksum(folder: Path) -> float:
    from safetensors.torch import load_file

    return float(sum(t.double().sum() for t in load_file(folder / "model.safetensors").values()))


# ---- an interrupted download ------------------------------------------------------------------
CHUNK = 10 * 1024 * 1024  # huggingface_hub's DOWNLOAD_CHUNK_SIZE: what it has written to disk


def _big_llm(folder: Path) -> None:
    """A tiny Llama with Vicuna's 32000-token vocabulary, untied: a 16 MB safetensors, larger
    than huggingface_hub's 10 MiB download chunk, so a cut after the first chunk can resume."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(config).save_pretrained(folder)


VICUNA = "lmsys/vicuna-7b-v1.5"
WEIGHTS = "model.safetensors"


def _llm_config(tmp_path: Path) -> Path:
    return _config(tmp_path, llm={"model_id": VICUNA})


def test_a_download_cut_mid_file_resumes_with_a_range_request(tmp_path):
    _big_llm(tmp_path / "llm")
    size = (tmp_path / "llm" / WEIGHTS).stat().st_size
    assert size > CHUNK + 2**20
    with LoopbackHub(tmp_path / "server") as hub:
        sha = hub.publish(VICUNA, tmp_path / "llm")
        hub.interrupt(VICUNA, WEIGHTS, after=CHUNK + 2**20)  # the link drops once, 11 MiB in
        config = _llm_config(tmp_path)
        done = _prepare(hub, tmp_path, "models", "--config", str(config), "--repo", VICUNA)
        answers = [(status, sent) for status, path, sent in hub.responses if WEIGHTS in path]
        ranges = list(hub.ranges(WEIGHTS))
    assert done.returncode == 0, done.stderr[-3000:]
    assert ranges == [f"bytes={CHUNK}-"], ranges  # resumed after the chunk it had written
    # the cut answer, then the rest: 206 from the resume offset, not the whole file again
    assert answers[-2:] == [(200, CHUNK + 2**20), (206, size - CHUNK)], answers
    cached = tmp_path / "hf" / "hub" / f"models--{VICUNA.replace('/', '--')}" / "snapshots" / sha
    assert (cached / WEIGHTS).read_bytes() == (tmp_path / "llm" / WEIGHTS).read_bytes()
    assert json.loads(_marker(tmp_path, VICUNA).read_text())["commit"] == sha


def test_a_link_that_keeps_failing_stops_prepare_with_a_message_and_the_next_run_completes(
    tmp_path,
):
    """huggingface_hub retries a cut transfer five times; when every try is cut, prepare stops
    naming the repo and what to do (no traceback, no marker), and the next run completes."""
    _big_llm(tmp_path / "llm")
    config = _llm_config(tmp_path)
    with LoopbackHub(tmp_path / "server") as hub:
        sha = hub.publish(VICUNA, tmp_path / "llm")
        hub.interrupt(VICUNA, WEIGHTS, after=CHUNK + 2**20, times=6)  # first try + 5 retries
        failed = _prepare(hub, tmp_path, "models", "--config", str(config), "--repo", VICUNA)
        assert not _marker(tmp_path, VICUNA).exists()
        done = _prepare(hub, tmp_path, "models", "--config", str(config), "--repo", VICUNA)
    out = failed.stdout + failed.stderr
    assert failed.returncode == 1, out[-3000:]
    assert f"llm.model_id: {VICUNA}: the connection to the Hub ({hub.endpoint}) failed" in out
    assert "run prepare again" in out and "Traceback" not in out, out[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    cached = tmp_path / "hf" / "hub" / f"models--{VICUNA.replace('/', '--')}" / "snapshots" / sha
    assert (cached / WEIGHTS).read_bytes() == (tmp_path / "llm" / WEIGHTS).read_bytes()


# ---- a gated repo -----------------------------------------------------------------------------
def test_a_gated_repo_is_refused_with_the_licence_message_until_the_token_is_accepted(tmp_path):
    config = _config(tmp_path)
    write_twin(tmp_path / "twin", _spec(config, "clip_b"))
    with LoopbackHub(tmp_path / "server") as hub:
        hub.publish(CLIP, tmp_path / "twin", gated=True)
        hub.tokens.add("hf_accepted")
        refused = {
            "no token": _prepare(hub, tmp_path, "models", "--config", str(config)),
            "a token not on the list": _prepare(
                hub, tmp_path, "models", "--config", str(config), HF_TOKEN="hf_other"
            ),
        }
        statuses = sorted({status for status, path, _ in hub.responses if "/resolve/" in path})
        assert not _marker(tmp_path, CLIP).exists()
        done = _prepare(hub, tmp_path, "models", "--config", str(config), HF_TOKEN="hf_accepted")
    assert statuses == [401, 403]
    for why, result in refused.items():
        out = result.stdout + result.stderr
        assert result.returncode != 0, why
        assert f"encoders.clip_b.model_id: {CLIP} is gated" in out, (why, out[-2000:])
        assert f"https://huggingface.co/{CLIP}" in out and "HF_TOKEN" in out, why
        assert "Traceback" not in out, why
    assert done.returncode == 0, done.stderr[-3000:]
    assert _marker(tmp_path, CLIP).exists()


def test_a_missing_repo_a_moved_id_and_an_unknown_revision_are_named(tmp_path):
    """The Hub's 401 RepoNotFound and 404 RevisionNotFound, through huggingface_hub's error
    classes, become prepare's messages naming the config key and the repo."""
    moved = "runwayml/stable-diffusion-v1-5"
    missing = "openai/clip-vit-huge-patch99"
    write_twin(tmp_path / "twin", _spec(_config(tmp_path), "clip_b"))
    sd = {"family": "sd_unet", "model_id": moved, "input_size": 512, "timestep": 1}
    cases = {
        "moved": ({"sd": sd}, {}, f"encoders.sd.model_id: {moved} was deleted from the Hub: use "),
        "missing": (
            {"clip_b": {"family": "clip", "model_id": missing, "input_size": 224}},
            {},
            f"encoders.clip_b.model_id: {missing} was not found on the Hub",
        ),
        "revision": (None, {CLIP: "0" * 40}, f"{CLIP}: the pinned revision in cache.revisions"),
    }
    with LoopbackHub(tmp_path / "server") as hub:
        hub.publish(CLIP, tmp_path / "twin")
        for case, (encoders, revisions, message) in cases.items():
            extra = {"encoders": encoders} if encoders else {}
            cache = {"hf_home": str(tmp_path / "hf"), "revisions": revisions}
            config = _config(tmp_path, cache=cache, **extra)
            done = _prepare(hub, tmp_path, "models", "--config", str(config))
            out = done.stdout + done.stderr
            assert done.returncode == 1 and message in out, (case, out[-2000:])
            assert "Traceback" not in out, case
        statuses = {status for status, _, _ in hub.responses}
    assert {401, 404} <= statuses  # RepoNotFound, RevisionNotFound as the Hub answers them
    assert not (tmp_path / "hf" / "vislaw-prepared").exists()


# ---- benchmark datasets -----------------------------------------------------------------------
LOAD_TASKS = """
import json, sys
from lmms_eval.tasks import TaskManager, get_task_dict
out = {}
for name, task in get_task_dict(sys.argv[1:], TaskManager()).items():
    out[str(name)] = {s: sorted(task.dataset[s].column_names) + [len(task.dataset[s])]
                      for s in task.dataset}
print("TASKS " + json.dumps(out))
"""


def test_benchmark_datasets_are_prepared_and_lmms_eval_loads_them_offline(tmp_path):
    """The paper's eight benchmarks: each tiny dataset (the exact columns its installed task
    reads, tests/helpers/real_task_data.py) served under the id and configuration that task names;
    prepare fetches them through huggingface_hub and builds their datasets cache; lmms-eval
    then builds each task offline, its own load_dataset call included."""
    from vislaw.eval.task_data import task_data
    from vislaw.eval.tasks import resolve_benchmarks
    from vislaw.law.tables import PAPER_BENCHMARKS

    benchmarks = list(PAPER_BENCHMARKS)
    config = _config(
        tmp_path,
        encoders={"tiny": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}},
        benchmarks=benchmarks,
        eval={"tasks": {"mmbench_en": "mmbench_en_dev_static"}},
        targets=["evaluate"],
    )
    tasks = [b.task for b in resolve_benchmarks(load_checked_config(str(config))[0])]
    with LoopbackHub(tmp_path / "server") as hub:
        expected = publish_benchmark_datasets(hub, tasks, tmp_path / "datasets")
        done = _prepare(hub, tmp_path, "models", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    for task in tasks:
        assert _marker(tmp_path, task_data(task).dataset_path, "dataset").exists(), task
    env = _env(tmp_path, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_TASKS, *tasks],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    line = next(x for x in loaded.stdout.splitlines() if x.startswith("TASKS "))
    assert json.loads(line.removeprefix("TASKS ")) == expected

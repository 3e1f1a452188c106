"""``prepare`` against a loopback Hub (tests/loopback_hub.py): huggingface_hub's own download
code (``snapshot_download``: revision info, tree, ``resolve`` with ETags and commit headers,
Range resume, gated 401s) runs unmodified in a ``python -m vislaw.prepare`` subprocess whose
``HF_ENDPOINT`` points at 127.0.0.1; what it leaves in ``cache.hf_home`` then loads offline
through the real loading code (the encoder families' ``from_pretrained``, and
``datasets.load_dataset`` called as lmms-eval calls it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT
from hub_twins import write_twin
from loopback_hub import LoopbackHub

from vislaw.pipeline import load_checked_config

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
        timeout=300,
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
print(json.dumps({"params": sum(p.numel() for p in encoder.model.parameters()),
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
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_twin_under_a_real_id_is_prepared_through_huggingface_hub_and_loads_offline(tmp_path):
    config = _config(tmp_path)
    spec = _spec(config, "clip_b")
    write_twin(tmp_path / "twin", spec)
    with LoopbackHub(tmp_path / "server") as hub:
        sha = hub.publish(CLIP, tmp_path / "twin")
        done = _prepare(hub, tmp_path, "models", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    marker = json.loads(_marker(tmp_path, CLIP).read_text())
    assert marker["commit"] == sha
    assert sorted(marker["files"]) == ["config.json", "model.safetensors"]
    snapshot = tmp_path / "hf" / "hub" / f"models--{CLIP.replace('/', '--')}" / "snapshots" / sha
    for name in marker["files"]:
        assert (snapshot / name).read_bytes() == (tmp_path / "twin" / name).read_bytes()
    # huggingface_hub's own path: revision info, tree listing, a HEAD per file before its GET
    paths = [(method, path.split("?")[0]) for method, path, _ in hub.requests]
    assert ("GET", f"/api/models/{CLIP}/revision/main") in paths
    assert ("GET", f"/api/models/{CLIP}/tree/{sha}") in paths
    assert ("HEAD", f"/{CLIP}/resolve/{sha}/config.json") in paths
    assert not (tmp_path / "user-home" / "hub").exists()  # everything went to cache.hf_home
    loaded = _load_offline(tmp_path, spec)
    assert (
        loaded["hidden"]
        == json.loads((tmp_path / "twin" / "config.json").read_text())["hidden_size"]
    )
    assert loaded["params"] > 0

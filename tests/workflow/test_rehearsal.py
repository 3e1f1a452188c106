"""The dress rehearsal (issue 24): the paper's config.yaml, every default target, end to end.

In a fresh folder, with ``HF_ENDPOINT`` at a loopback Hub (tests/helpers/loopback_hub.py) and a
fresh ``HF_HOME``: ``snakemake prepare`` and then ``snakemake`` on config.yaml plus
config/rehearsal.yaml (sizes, resources and execution settings only) plus a generated overlay
holding only the loopback URLs of the URL sources. Everything config.yaml loads is published
under its real id: the encoders' tiny twins in their real classes and layouts
(tests/helpers/hub_twins.py), a tiny Vicuna-layout Llama (SentencePiece tokenizer.model), the LLaVA
repos' JSON and images.zip, the eight benchmarks' datasets in the schemas the installed
lmms-eval tasks read, under the dataset ids those tasks name; the URL sources (SPair-71k, the
665K mixture's image archives, Imagenette) are archives in the real layouts on a loopback file
server; OCR-VQA, a manual source, is put in place and marked as a user does
(``python -m vislaw.prepare mark``). Nothing is mocked: `prepare` runs huggingface_hub's own
download code and every job the real loading code, offline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import run_snakemake

OVERLAY = ROOT / "config" / "rehearsal.yaml"
TARGETS = ["features", "c_score", "evaluate", "a_score", "law", "lmvr", "report"]


def sentencepiece_loads_vicuna() -> str | None:
    """None when this environment can load a SentencePiece-only tokenizer (Vicuna's); else why.
    sentencepiece 0.2.3's protobuf module needs protobuf>=7.36.1, which lmms-eval's wandb
    (protobuf<7) excludes; pyproject.toml pins sentencepiece<0.2.3."""
    from importlib.metadata import version

    if version("sentencepiece") == "0.2.3" and int(version("protobuf").split(".")[0]) < 7:
        return (
            f"sentencepiece {version('sentencepiece')} with protobuf {version('protobuf')}: "
            "reinstall with `pip install 'sentencepiece>=0.2,<0.2.3'` (pyproject.toml)"
        )
    return None


# Every key config/rehearsal.yaml may set (fnmatch patterns over dotted paths): sizes, resources
# and warm start (execution). Anything else fails: a data source, a target, `tiny`, a model id,
# a dtype (the rehearsal computes in config.yaml's bfloat16, as the cluster will).
OVERLAY_KEYS = (
    "warm_start", "encoders.*.input_size", "features.batch_size", "resources.*.*",
    "train.num_workers", "train.stage[12].per_device_batch", "train.stage[12].global_batch",
    "train.stage[12].save_steps", "eval.max_new_tokens", "a_score.n_images",
    "a_score.n_captions", "a_score.batch_size", "lmvr.max_new_tokens", "lmvr.batch_size",
    "lmvr.maps.n_images",
)  # fmt: skip


def _leaves(node: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(node, dict):
        return {prefix: node}
    return {
        k: v for key, value in node.items() for k, v in _leaves(value, f"{prefix}{key}.").items()
    }


def test_rehearsal_overlay_changes_only_sizes_and_keeps_every_target():
    """config/rehearsal.yaml may not set tiny, swap data sources, drop targets or benchmarks."""
    from fnmatch import fnmatchcase

    overlay = yaml.safe_load(OVERLAY.read_text())
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    for key in _leaves(overlay):
        key = key.rstrip(".")
        assert any(fnmatchcase(key, pattern) for pattern in OVERLAY_KEYS), key
    for name in overlay.get("encoders", {}):
        assert name in paper["encoders"], name
    assert "tiny" not in json.dumps(overlay)
    assert paper["targets"] == TARGETS


def test_rehearsal_vicuna_twin_tokenizer_loads(tmp_path):
    """The LLM twin in Vicuna's layout (tokenizer.model only) loads through AutoTokenizer as
    lmsys/vicuna-7b-v1.5 does: BOS prepended, no pad token. Fails with sentencepiece 0.2.3
    beside protobuf 6 (the rehearsal's first finding)."""
    from transformers import AutoTokenizer

    from helpers.rehearsal_data import vicuna_twin

    folder = vicuna_twin(tmp_path / "vicuna", ["a red square"])
    assert not (folder / "tokenizer.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer("USER: a red square").input_ids
    assert ids[0] == 1 and tokenizer.pad_token is None
    assert tokenizer.decode(ids, skip_special_tokens=True) == "USER: a red square"


def _publish(hub, work: Path, config: dict, specs: dict) -> None:
    """Every Hub repo config.yaml loads, under its real id."""
    from helpers import rehearsal_data as data
    from helpers.hub_twins import write_hub_twins
    from vislaw.prepare.hub import benchmark_datasets

    twins = work / "twins"
    for repo_id in write_hub_twins(twins, specs):
        snapshots = twins / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots"
        hub.publish(repo_id, next(snapshots.iterdir()))
    captions = [c for c in data.CAPTIONS] + ["What colour is the picture?", "It is red."]
    hub.publish(config["llm"]["model_id"], data.vicuna_twin(work / "vicuna", captions))
    pretrain_json, pretrain_zip = data.llava_pretrain(16)
    instruct_json, archives = data.llava_instruct(3)
    sources = config["data"]["sources"]
    files: dict[str, dict[str, bytes]] = {}
    for name in ("llava_pretrain_json", "llava_pretrain_images", "llava_instruct_json"):
        hub_source = sources[name]["hub"]
        blob = {
            "blip_laion_cc_sbu_558k.json": pretrain_json,
            "images.zip": pretrain_zip,
            "llava_v1_5_mix665k.json": instruct_json,
        }[hub_source["file"]]
        files.setdefault(hub_source["repo"], {})[hub_source["file"]] = blob
    for repo_id, members in files.items():
        folder = work / "repos" / repo_id
        for name, blob in members.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(blob)
        hub.publish(repo_id, folder, repo_type="dataset")
    for bench in benchmark_datasets(config).values():
        folder = data.dataset_repo(bench.task, bench.dataset_name, work / "bench" / bench.task)
        hub.publish(bench.dataset_path, folder, repo_type="dataset")
    return archives


def _serve_urls(server, work: Path, config: dict, archives: dict) -> dict:
    """The URL sources' archives on the file server; returns the URL overlay."""
    from helpers import rehearsal_data as data

    blobs = {
        "spair": data.spair(work / "spair"),
        "lmvr_imagenette": data.imagenette(3),
        **{name: data.zip_bytes(members) for name, members in archives.items()},
    }
    urls = {}
    for name, entry in config["data"]["sources"].items():
        if "url" not in entry:
            continue
        path = "/" + entry["url"].split("://", 1)[1].split("/", 1)[1]
        server.files[path] = blobs[name]
        urls[name] = {"url": server.url(path)}
    return {"data": {"sources": urls}}


def _env(work: Path, hub) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        HF_HOME=str(work / "user-hf-home"),  # a fresh one: prepare must fill cache.hf_home
        HF_ENDPOINT=hub.endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    return env


def _snakemake(run: Path, env: dict, configs: list[Path], *args: str, timeout: int = 3600):
    # env is the whole environment: what this process has beyond it (conftest's HF_HUB_OFFLINE=1
    # above all, which would keep `prepare` offline as a user's own switch) is unset
    unset = dict.fromkeys((name for name in os.environ if name not in env), None)
    result = run_snakemake(
        *args, "-s", str(ROOT / "Snakefile"), "--directory", str(run), "--cores", "2",
        "--configfile", *map(str, configs), env={**env, **unset}, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return result


@pytest.mark.slow
@pytest.mark.rehearsal
def test_rehearsal_config_yaml_every_target(tmp_path):
    from helpers.file_server import FileServer
    from helpers.loopback_hub import LoopbackHub
    from vislaw.pipeline import load_checked_config

    if (why := sentencepiece_loads_vicuna()) is not None:
        pytest.fail(why)
    work, run = tmp_path / "build", tmp_path / "run"
    run.mkdir()
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    config, specs = load_checked_config(paper)
    server = FileServer()
    started = time.monotonic()
    try:
        with LoopbackHub(work / "hub") as hub:
            archives = _publish(hub, work, config, specs)
            urls = run / "rehearsal-urls.yaml"
            urls.write_text(yaml.safe_dump(_serve_urls(server, work, config, archives)))
            configs = [ROOT / "config.yaml", OVERLAY, urls]
            env = _env(tmp_path, hub)
            # OCR-VQA is a manual source: the user puts the covers in place and marks it.
            ocr = run / "data" / "LLaVA-Instruct" / "images" / "ocr_vqa"
            for member, blob in archives.pop("ocr_vqa").items():
                (ocr / member).parent.mkdir(parents=True, exist_ok=True)
                (ocr / member).write_bytes(blob)
            marked = subprocess.run(
                [sys.executable, "-m", "vislaw.prepare", "mark", "--config", str(ROOT / "config.yaml")]
                + ["--source", "ocr_vqa"],
                cwd=run, env=env, capture_output=True, text=True,
            )  # fmt: skip
            assert marked.returncode == 0, marked.stderr[-3000:]
            _snakemake(run, env, configs, "prepare")
            built = time.monotonic()
    finally:
        server.stop()
    offline = {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing may reach the Hub now
    _snakemake(run, offline, configs, timeout=3600)
    finished = time.monotonic()
    print(f"rehearsal: prepare {built - started:.0f} s, run {finished - built:.0f} s")

    results = run / "results" / "paper"
    _check_outputs(results, paper, set(specs))
    # The HTML report of the finished run (README "The HTML report").
    _snakemake(run, offline, configs, "--report", str(run / "report.html"), timeout=900)
    assert (run / "report.html").stat().st_size > 10_000


def _check_outputs(results: Path, paper: dict, encoders: set[str]) -> None:
    """Every default target's outputs, with a row per encoder and benchmark."""
    c_scores = pd.read_csv(results / "scores" / "c_scores.csv")
    assert set(c_scores["encoder"]) == encoders and c_scores["n_pairs"].gt(0).all()
    table = pd.read_csv(results / "scores" / "benchmarks.csv")
    assert set(table["benchmark"]) == set(paper["benchmarks"])
    assert set(table["encoder"]) == encoders
    predictions = pd.read_csv(results / "law" / "predictions.csv")
    for benchmark, rows in predictions.groupby("benchmark"):
        assert set(rows["encoder"]) == encoders, benchmark
    assert (results / "law" / "law.png").stat().st_size > 0
    probe = pd.read_csv(results / "lmvr" / "probe.csv")
    assert set(probe["encoder"]) == encoders
    assert (results / "report" / "training_curves.png").stat().st_size > 0


def test_rehearsal_answers_lose_control_characters():
    """An answer holding a control character (a byte-fallback token of an untrained twin) made
    lmms-eval's MMBench export (openpyxl) fail the whole benchmark in the rehearsal."""
    from openpyxl.utils.exceptions import IllegalCharacterError
    from openpyxl.workbook import Workbook

    from vislaw.eval.plugin import VislawLMM

    answer = VislawLMM.cut_at_stops(" B\x02\x1b\tC\nD ASSISTANT: x", ["ASSISTANT:"])
    assert answer == "B\tC\nD"
    Workbook().active.cell(1, 1).value = answer  # what the export does with it
    with pytest.raises(IllegalCharacterError):
        Workbook().active.cell(1, 1).value = "B\x02"

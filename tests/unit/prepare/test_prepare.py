"""Real inputs (vislaw.prepare): downloads from a 127.0.0.1 server the test starts (resume after
the server goes away, wrong hash, truncated archive), the gated-model message from a server
answering as the Hub does, and the dry run that refuses to start with nothing prepared."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers.file_server import FileServer
from helpers.paths import ROOT
from helpers.run import run_snakemake
from vislaw.config import check_config
from vislaw.prepare.download import DownloadError, download, part_path
from vislaw.prepare.sources import prepare_source, sources
from vislaw.prepare.unpack import UnpackError

BIN = Path(sys.executable).parent


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.stop()


def _zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in entries.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def _tar_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _names(folder: Path) -> set[str]:
    return (
        {p.relative_to(folder).as_posix() for p in folder.rglob("*")} if folder.exists() else set()
    )


# ---- the download client -------------------------------------------------------------------------
def test_wrong_hash_deletes_the_download_and_names_both_hashes(server, tmp_path):
    payload = os.urandom(300_000)
    server.files["/a.bin"] = payload
    wrong = "0" * 64
    target = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as info:
        download(server.url("/a.bin"), target, sha256=wrong, progress=False, retries=0)
    message = str(info.value)
    assert wrong in message and hashlib.sha256(payload).hexdigest() in message
    assert "/a.bin" in message
    assert _names(tmp_path) == set()  # neither the final name nor a .part is left


def test_server_gone_mid_download_then_resume(tmp_path):
    payload = os.urandom(3_000_000)
    digest = hashlib.sha256(payload).hexdigest()
    srv = FileServer()
    srv.files["/big.zip"] = payload
    srv.cut_after = 1_000_000
    target = tmp_path / "big.zip"
    with pytest.raises(DownloadError, match="run the same command again to resume") as info:
        download(srv.url("/big.zip"), target, sha256=digest, progress=False, retries=0)
    assert srv.url("/big.zip") in str(info.value)
    assert not target.exists()
    assert part_path(target).stat().st_size == 1_000_000
    port = srv.port
    srv.stop()  # the server is gone: the next try fails too and keeps the partial file
    with pytest.raises(DownloadError, match="interrupted"):
        download(
            f"http://127.0.0.1:{port}/big.zip",
            target,
            sha256=digest,
            progress=False,
            retries=1,
            backoff=0.01,
        )
    assert not target.exists() and part_path(target).stat().st_size == 1_000_000
    back = FileServer(port)  # back on the same address: the download resumes at 1 MB
    back.files["/big.zip"] = payload
    try:
        download(back.url("/big.zip"), target, sha256=digest, progress=False, retries=0)
    finally:
        back.stop()
    assert back.ranges == ["bytes=1000000-"]
    assert target.read_bytes() == payload and not part_path(target).exists()


# ---- sources: unpack and markers -----------------------------------------------------------------
def _source_config(tmp_path: Path, entries: dict) -> dict:
    return check_config(
        {
            "run": "t",
            "encoders": {
                "clip224": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}
            },
            "data": {"root": str(tmp_path / "data"), "sources": entries},
        }
    )


def test_source_unpacks_atomically_and_leaves_a_marker(server, tmp_path):
    archive = _tar_bytes({"SPair-71k/Layout/large/test.txt": b"x\n", "SPair-71k/a.txt": b"a"})
    server.files["/SPair-71k.tar.gz"] = archive
    config = _source_config(
        tmp_path,
        {
            "spair": {
                "for": "spair",
                "url": server.url("/SPair-71k.tar.gz"),
                "unpack": "tar",
                "sha256": hashlib.sha256(archive).hexdigest(),
            }
        },
    )
    marker = prepare_source(config, "spair", progress=False)
    data = tmp_path / "data"
    assert marker == sources(config)["spair"].marker
    assert json.loads(marker.read_text())["entries"] == ["SPair-71k"]
    assert (data / "SPair-71k" / "a.txt").read_bytes() == b"a"
    assert {n for n in _names(data) if not n.startswith(".vislaw-state")} == {
        "SPair-71k",
        "SPair-71k/Layout",
        "SPair-71k/Layout/large",
        "SPair-71k/Layout/large/test.txt",
        "SPair-71k/a.txt",
    }
    # the state folder keeps the marker and the lock files; no download, journal or part is left
    state = data / ".vislaw-state"
    state_files = {n for n in _names(state) if (state / n).is_file()}
    assert {n for n in state_files if not n.startswith("locks/")} == {"sources/spair.json"}
    server.files.clear()  # prepared: a second prepare does not download again
    assert prepare_source(config, "spair", progress=False) == marker


def test_truncated_archive_leaves_nothing_under_a_final_name(server, tmp_path):
    archive = _zip_bytes({"train2017/0001.jpg": os.urandom(50_000), "train2017/0002.jpg": b"x"})
    server.files["/train2017.zip"] = archive[: len(archive) // 2]
    config = _source_config(
        tmp_path,
        {
            "coco": {
                "for": "instruct",
                "url": server.url("/train2017.zip"),
                "unpack": "zip",
                "dest": "LLaVA-Instruct/images/coco",
            }
        },
    )
    with pytest.raises(UnpackError, match="truncated or corrupt zip archive") as info:
        prepare_source(config, "coco", progress=False)
    assert "train2017.zip" in str(info.value)
    dest = tmp_path / "data" / "LLaVA-Instruct" / "images" / "coco"
    assert _names(dest) == set()  # no entry, no marker, no temporary folder
    assert not sources(config)["coco"].marker.exists()


def test_archive_member_escaping_its_folder_is_refused(server, tmp_path):
    server.files["/evil.zip"] = _zip_bytes({"../../outside.txt": b"x"})
    config = _source_config(
        tmp_path, {"evil": {"for": "spair", "url": server.url("/evil.zip"), "unpack": "zip"}}
    )
    with pytest.raises(UnpackError, match="outside its folder"):
        prepare_source(config, "evil", progress=False)
    assert not (tmp_path / "outside.txt").exists()
    assert not any(p.name.startswith(".vislaw-source") for p in (tmp_path / "data").iterdir())


def test_manual_source_says_what_to_do(tmp_path):
    config = _source_config(
        tmp_path, {"ocr_vqa": {"for": "instruct", "manual": "Fetch the covers by hand."}}
    )
    with pytest.raises(RuntimeError, match="Fetch the covers by hand.*vislaw.prepare mark"):
        prepare_source(config, "ocr_vqa", progress=False)


# ---- Hub: a gated model without a token ----------------------------------------------------------
GATED_SCRIPT = """
import sys
from vislaw.prepare.hub import HubRepo, prepare_repo
from vislaw.prepare.sources import PrepareError
repo = HubRepo("stabilityai/stable-diffusion-3-medium-diffusers", "model",
               ("transformer/*.safetensors",), "encoders.sd3.model_id")
try:
    prepare_repo(sys.argv[1], repo)
except PrepareError as err:
    print(err)
    sys.exit(3)
"""


def test_gated_model_without_token_names_licence_page_and_hf_token(server, tmp_path):
    # The Hub answers a gated repo without a token with 401 and X-Error-Code: GatedRepo;
    # huggingface_hub turns that into its GatedRepoError, which prepare turns into the message.
    server.error = (401, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env.update(
        HF_ENDPOINT=server.url(""),
        HF_HUB_DISABLE_TELEMETRY="1",
        PYTHONPATH=str(ROOT),
        HF_HOME=str(tmp_path / "home"),
    )
    result = subprocess.run(
        [sys.executable, "-c", GATED_SCRIPT, str(tmp_path / "hf")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    message = result.stdout
    assert "encoders.sd3.model_id" in message and "gated" in message
    assert "https://huggingface.co/stabilityai/stable-diffusion-3-medium-diffusers" in message
    assert "HF_TOKEN" in message
    assert server.ranges  # the request reached the local server
    assert not (tmp_path / "hf" / "vislaw-prepared").exists()  # no marker


# ---- refuse early --------------------------------------------------------------------------------
def _snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_snakemake(*args, cwd=cwd, timeout=900, env={"PYTHONPATH": str(ROOT)})


def test_dry_run_with_nothing_prepared_refuses_and_names_prepare(tmp_path):
    """config.yaml in an empty checkout (a fresh clone's files, no data/)."""
    for name in ("Snakefile", "config.yaml", "pyproject.toml"):
        (tmp_path / name).write_text((ROOT / name).read_text())
    for folder in ("rules", "workflow_scripts", "envs", "report", "resources", "vislaw"):
        os.symlink(ROOT / folder, tmp_path / folder)
    result = _snakemake("-n", "--configfile", "config.yaml", cwd=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "snakemake prepare --configfile config.yaml" in out
    assert "data source 'spair'" in out and "stabilityai/stable-diffusion-3-medium" in out
    assert "Traceback" not in out
    assert not (tmp_path / "results").exists() and not (tmp_path / "data").exists()


def test_hub_source_comes_from_the_hub_cache(tmp_path):
    """A `hub` source (config.yaml's LLaVA JSONs) is read through huggingface_hub from
    cache.hf_home (here pre-populated in the Hub's cache layout; the tests run offline)."""
    from helpers.hub_twins import snapshot_dir

    repo = "liuhaotian/LLaVA-Pretrain"
    snapshot = snapshot_dir(tmp_path / "hf", repo)
    # snapshot_dir writes a model repo; a dataset repo's folder is named datasets--<org>--<name>
    dataset_root = tmp_path / "hf" / "hub" / f"datasets--{repo.replace('/', '--')}"
    snapshot.parent.parent.rename(dataset_root)
    snapshot = dataset_root / "snapshots" / snapshot.name
    (snapshot / "blip_laion_cc_sbu_558k.json").write_text("[]")
    config = _source_config(
        tmp_path,
        {
            "json": {
                "for": "pretrain",
                "hub": {"repo": repo, "file": "blip_laion_cc_sbu_558k.json"},
                "dest": "LLaVA-Pretrain",
            }
        },
    )
    config = check_config({**config, "cache": {"hf_home": str(tmp_path / "hf")}})
    marker = prepare_source(config, "json", progress=False)
    assert (
        tmp_path / "data" / "LLaVA-Pretrain" / "blip_laion_cc_sbu_558k.json"
    ).read_text() == "[]"
    info = json.loads(marker.read_text())
    assert info["url"] == f"hub:{repo}/blip_laion_cc_sbu_558k.json"
    assert info["sha256"] == hashlib.sha256(b"[]").hexdigest()
    assert (snapshot / "blip_laion_cc_sbu_558k.json").exists()  # the Hub cache keeps its copy

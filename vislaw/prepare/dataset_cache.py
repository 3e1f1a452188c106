"""The ``datasets`` cache of a benchmark dataset, built as lmms-eval will open it offline.

Why a second step after ``snapshot_download``: offline, ``datasets.load_dataset("<org>/<name>")``
never reads the Hub cache's snapshot; it gives up on the Hub (``OfflineModeIsEnabled``) and
falls back to the *prepared* copy in its own cache (``HF_DATASETS_CACHE``, by default
``$HF_HOME/datasets``: ``<org>___<name>/<config>/<version>/<commit>/``). Without that copy every
offline evaluation stops with ``Couldn't reach '<id>' on the Hub`` (found by running prepare
against the loopback Hub, tests/unit/prepare/test_loopback_hub.py). So prepare loads each benchmark
dataset once, online, the way lmms-eval's ``ConfigurableTask.download`` calls ``load_dataset``, with
``cache_dir=<cache.hf_home>/datasets``: the directory lmms-eval resolves in a job whose
``HF_HOME`` is ``cache.hf_home`` (vislaw.jobs.runtime_environment).

It runs in a subprocess with ``HF_HOME=<cache.hf_home>``: ``datasets`` fetches data files
through huggingface_hub's default cache, which huggingface_hub fixes from ``HF_HOME`` at import,
so only a fresh process puts them beside the snapshot prepare already downloaded (no second
download) instead of in the user's own Hub cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class DatasetCacheError(RuntimeError):
    """``load_dataset`` failed while building the cache; the message names the dataset."""


def datasets_cache(hf_home: str | Path) -> Path:
    """Where lmms-eval's ``load_dataset`` looks in a job with ``HF_HOME=<hf_home>``."""
    return Path(hf_home).resolve() / "datasets"


def build_dataset_cache(
    hf_home: str | Path,
    repo_id: str,
    *,
    config_name: str | None = None,
    revision: str | None = None,
    timeout: float = 24 * 3600,
) -> Path:
    """Load ``repo_id`` (configuration ``config_name``, at ``revision``) into the ``datasets``
    cache under ``hf_home``; returns that cache folder. Raises DatasetCacheError naming the
    dataset with the end of the loader's output."""
    cache = datasets_cache(hf_home)
    request = {"path": repo_id, "name": config_name, "revision": revision, "cache_dir": str(cache)}
    env = {**os.environ, "HF_HOME": str(Path(hf_home).resolve())}
    env.pop("HF_DATASETS_CACHE", None)  # cache_dir is explicit; HF_HOME places the Hub files
    done = subprocess.run(
        [sys.executable, "-m", "vislaw.prepare.dataset_cache", json.dumps(request)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
        raise DatasetCacheError(
            f"{repo_id} (configuration {config_name or 'default'}): datasets.load_dataset "
            f"could not build its cache in {cache}:\n{tail}"
        )
    return cache


def main(argv: list[str]) -> int:
    """``python -m vislaw.prepare.dataset_cache '<json>'``: one ``load_dataset`` call with
    lmms-eval's arguments (every split, reuse what is cached, one process)."""
    import datasets

    request = json.loads(argv[0])
    token = os.environ.get("HF_TOKEN") or None
    loaded = datasets.load_dataset(
        path=request["path"],
        name=request["name"],
        revision=request["revision"],
        cache_dir=request["cache_dir"],
        download_mode=datasets.DownloadMode.REUSE_DATASET_IF_EXISTS,
        num_proc=1,
        token=token,
    )
    print(json.dumps({split: len(rows) for split, rows in loaded.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

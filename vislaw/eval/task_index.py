"""lmms-eval's index of its installed tasks, built once and kept on disk between jobs.

Why: lmms-eval builds the index by parsing every task YAML it ships (~2,000 files, 10-30 s on a
2-core machine), and every evaluate job and the A-score image sampling builds one; a run of 20
encoders spends minutes reading the same files. The index depends only on those files, so it
is stored under a key made of the lmms-eval version and each task YAML's path, size and
modification time: a changed, added or removed task file gives a new key, hence a fresh index,
never a stale one. A stored index is trusted only if it parses and every ``yaml_path`` it
holds is one of the files the key was made from; otherwise it is rebuilt and overwritten.
Where the cache folder cannot be written the index is simply built each time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

CACHE_VAR = "VISLAW_CACHE_DIR"  # overrides $XDG_CACHE_HOME/vislaw (default ~/.cache/vislaw)

Index = dict[str, dict[str, Any]]
_memo: dict[str, Index] = {}


def cache_dir() -> Path:
    """Where vislaw keeps indexes it can rebuild at any time (per user, never in results/)."""
    if folder := os.environ.get(CACHE_VAR):
        return Path(folder)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vislaw"


def task_files(tasks_dir: Path) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every task YAML lmms-eval would index under ``tasks_dir``
    (it walks the folder, skipping ``__pycache__`` and ``.ipynb_checkpoints``)."""
    files = []
    for root, dirs, names in os.walk(tasks_dir):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", ".ipynb_checkpoints"))
        for name in sorted(names):
            if name.endswith(".yaml"):
                stat = os.stat(os.path.join(root, name))
                files.append((os.path.join(root, name), stat.st_size, stat.st_mtime_ns))
    return files


def index_key(version: str, files: list[tuple[str, int, int]]) -> str:
    digest = hashlib.sha256(version.encode())
    for path, size, mtime in files:
        digest.update(f"\0{path}\0{size}\0{mtime}".encode())
    return digest.hexdigest()[:24]


def _trusted(index: Any, paths: set[str]) -> bool:
    """A stored index names only task files of the key (or -1, lmms-eval's 'no file')."""
    if not isinstance(index, dict):
        return False
    for entry in index.values():
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            return False
        where = entry.get("yaml_path", -1)
        if where != -1 and where not in paths:
            return False
    return True


def installed_task_index(tasks_dir: Path, version: str, build: Callable[[], Index]) -> Index:
    """The index of the tasks under ``tasks_dir`` (lmms-eval ``version``): from this process's
    memo, else from the disk cache, else ``build()`` (lmms-eval's own indexing), then stored."""
    files = task_files(tasks_dir)
    key = index_key(version, files)
    if key in _memo:
        return copy.deepcopy(_memo[key])  # callers extend the index they get
    path = cache_dir() / f"lmms_eval_tasks-{key}.json"
    index = None
    try:
        stored = json.loads(path.read_text())
        index = stored if _trusted(stored, {f[0] for f in files}) else None
    except (OSError, ValueError):
        pass
    if index is None:
        index = build()
        _store(path, index)
    _memo[key] = index
    return copy.deepcopy(index)


def _store(path: Path, index: Index) -> None:
    from vislaw.io.atomic import write_text_atomic

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(index))
    except OSError as err:  # a read-only home: no cache, same index
        print(f"[vislaw] lmms-eval task index not cached ({path}: {err.strerror})")

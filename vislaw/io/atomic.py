"""Write to a temporary name beside the target, rename on success.

A killed job then leaves either the complete old file or nothing under the final name, never a
truncated file that Snakemake (or a user) would mistake for a finished output. What a SIGKILLed
writer does leave, its ``.<name>.tmp-<pid>`` (or ``.old-<pid>``) beside the target, is removed by
the next write of the same target once that pid is no longer running.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


def _pid_running(pid: int) -> bool:
    """Whether a process with this id exists on this machine (another user's counts too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(target: str | Path) -> list[Path]:
    """Delete the temporaries earlier writers of ``target`` left behind when they were killed:
    ``.<name>.tmp-<pid>`` and ``.<name>.old-<pid>`` whose pid is not this process and no
    longer runs. A live pid is kept (it may be a writer right now, or a reused pid: harmless).
    On a cluster a temporary from another node whose pid happens to be alive here is kept too;
    Snakemake never runs two jobs for one output, so nothing else is writing it."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    pattern = re.compile(rf"\.{re.escape(target.name)}\.(?:tmp|old)-(\d+)")
    for path in target.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _pid_running(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``target`` if the block ends
    without an exception, delete it otherwise."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target``
    whole, on failure it is removed (a killed job never leaves a half-written folder under the
    name)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def csv_text(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` (header first). ``columns`` default to the first row's keys; every
    row must have exactly those keys, so a typo'd column fails here, not in a reader later."""
    rows = list(rows)
    if columns is None:
        if not rows:
            raise ValueError("no rows to write and no columns given")
        columns = list(rows[0])
    for i, row in enumerate(rows):
        if set(row) != set(columns):
            raise ValueError(f"row {i} has columns {list(row)}, expected {list(columns)}")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(
    target: str | Path,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str] | None = None,
) -> Path:
    """The project's one CSV writer: :func:`csv_text`, written atomically to ``target``."""
    write_text_atomic(target, csv_text(rows, columns))
    return Path(target)


def write_frame(target: str | Path, frame: Any, float_format: str | None = None) -> Path:
    """A pandas DataFrame as CSV (no index), written atomically: the one way for code that
    already holds a frame (rows of dicts go through :func:`write_csv`). ``float_format``
    (e.g. ``"%.6g"``) as pandas takes it; None keeps pandas' full precision."""
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False, float_format=float_format)
    return Path(target)

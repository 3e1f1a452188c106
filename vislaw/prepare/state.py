"""Where ``prepare`` keeps its own files, out of every archive's reach, and the checks on them.

Why a separate folder: several sources unpack into one ``dest`` (``config.yaml``'s ``vg_part1``
and ``vg_part2``; ``spair`` unpacks into ``data.root`` itself), so anything ``prepare`` kept in a
``dest`` (journals, markers) could be planted there by another source's archive: a planted
journal made the clean-up delete folders outside ``data.root``, a planted marker made a source
that was never fetched count as prepared. The state folder ``<data.root>/.vislaw-state`` holds
markers, journals, downloads and locks; archive members whose first name starts with
:data:`STATE_PREFIX` are refused (vislaw.prepare.unpack), so no unpacking can write there even
when ``dest`` is ``data.root``. Every path read back from a state file goes through
:func:`entry_path` (one name, no ``..``, inside its root) before anything is deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

STATE_DIR = ".vislaw-state"
STATE_PREFIX = ".vislaw-"  # no archive member's first name may start with it


class StateError(RuntimeError):
    """A state file that does not hold what prepare writes (planted or damaged); names it."""


def state_dir(root: str | Path) -> Path:
    """The state folder of a data root (created by the callers that write to it)."""
    return Path(root) / STATE_DIR


def entry_path(root: Path, entry: object, origin: Path) -> Path:
    """``root / entry`` for a name read from the state file ``origin``, refused (StateError naming
    ``origin`` and the entry) unless it is one plain path component that stays under ``root``:
    no absolute path, no ``..``, no separator, no state-prefixed name, no symlinked way out."""
    if not isinstance(entry, str) or not entry:
        raise StateError(f"{origin}: entry {entry!r} is not a file name")
    pure = PurePosixPath(entry.replace("\\", "/"))
    if (
        pure.is_absolute()
        or len(pure.parts) != 1
        or pure.parts[0] in (".", "..")
        or entry.startswith(STATE_PREFIX)
    ):
        raise StateError(f"{origin}: entry {entry!r} is not one name inside {root}")
    path = root / entry
    if not path.parent.resolve().is_relative_to(root.resolve()):
        raise StateError(f"{origin}: entry {entry!r} resolves outside {root}")
    return path


def _lock_file(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)


@contextlib.contextmanager
def held_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``fcntl`` lock on ``path`` (waiting, with one line on stderr naming the
    holder's pid, while another process holds it). The kernel drops the lock when its holder
    dies, so a killed run never leaves a stale lock behind."""
    fd = _lock_file(path)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            print(
                f"vislaw prepare: {what} is locked by another prepare (pid {holder}, lock "
                f"{path}); waiting for it to finish",
                file=sys.stderr,
            )
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def source_lock(state: Path, name: str) -> contextlib.AbstractContextManager[None]:
    """One lock per source: two prepare runs of the same source take turns (the second then
    finds the first's marker and returns)."""
    return held_lock(state / "locks" / f"source-{name}.lock", f"data source '{name}'")


def dest_lock(state: Path, dest: Path) -> contextlib.AbstractContextManager[None]:
    """One lock per destination folder: sources sharing a ``dest`` check for clashes and rename
    their entries into place one at a time."""
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:16]
    return held_lock(state / "locks" / f"dest-{key}.lock", f"folder {dest}")

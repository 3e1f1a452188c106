"""Atomic, guarded unpacking of a downloaded archive into its destination folder, with a marker.

Several sources unpack into one folder (the five image sources of the 665K mixture all go under
``LLaVA-Instruct/images``, ``vg_part1`` and ``vg_part2`` into the same ``vg``), so a source
cannot replace its destination whole. Instead it is extracted into a fresh temporary folder
(``mkdtemp``) beside its entries; a journal lists the temporary folder and the top-level entries
about to be renamed into place; the entries are renamed (each rename is atomic); then the marker
is written and the journal removed. A run killed at any point leaves either no marker (and the
next run first removes what the journal lists) or a complete source; a truncated or corrupt
archive leaves nothing under a final name.

Journal and marker live in the state folder (vislaw.prepare.state), never in ``dest``, and every
name read back from a journal or marker is checked to be one name inside ``dest`` before it is
deleted or trusted. Before anything is extracted the member list is checked: no absolute or
``..`` names, no name under the state prefix, no duplicates, and the unpacked total within
``data.prepare.max_unpack_gb`` and ``max_unpack_ratio`` x the archive's size (a zip bomb).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vislaw.io.atomic import write_text_atomic
from vislaw.prepare.state import STATE_PREFIX, StateError, dest_lock, entry_path

KINDS = ("zip", "tar", "file")
GB = 1_000_000_000


class UnpackError(RuntimeError):
    """An archive that cannot be unpacked (truncated, corrupt, unsafe); names the archive."""


class CorruptArchive(UnpackError):
    """A truncated or corrupt archive: the download is deleted, the next run fetches it again."""


@dataclass(frozen=True)
class Limits:
    """The expansion guard (``data.prepare``): a member list whose sizes add up to more than
    ``max_gb`` gigabytes or ``max_ratio`` times the archive's size is refused before extraction.
    """

    max_ratio: float = 100.0
    max_gb: float = 200.0


def marker_path(state: str | Path, name: str) -> Path:
    """The file whose (verified) content says source ``name`` is complete."""
    return Path(state) / "sources" / f"{name}.json"


def _journal_path(state: Path, name: str) -> Path:
    return state / "unpack" / f"{name}.journal"


def _member_name(archive: Path, member: str) -> str:
    """The member's normalised name; refuses absolute names, '..' parts and the state prefix:
    an archive may not write outside its folder or into prepare's own files."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise UnpackError(f"{archive}: member {member!r} would unpack outside its folder")
    parts = [p for p in path.parts if p != "."]
    if parts and parts[0].startswith(STATE_PREFIX):
        raise UnpackError(
            f"{archive}: member {member!r} starts with {STATE_PREFIX!r}, the prefix of prepare's "
            "own files; such an archive is refused"
        )
    return "/".join(parts)


def _members(archive: Path, kind: str) -> list[tuple[str, int, bool]]:
    """(name, unpacked size, is a directory) of every member, as the archive declares them."""
    if kind == "zip":
        with zipfile.ZipFile(archive) as handle:
            return [(i.filename, i.file_size, i.is_dir()) for i in handle.infolist()]
    with tarfile.open(archive) as handle:
        return [(m.name, m.size if m.isreg() else 0, m.isdir()) for m in handle.getmembers()]


def check_members(archive: Path, kind: str, limits: Limits) -> None:
    """Refuse unsafe names, duplicate members and an expansion past ``limits``, before any byte
    is extracted (zipfile never yields more than a member's declared size; a tar member's size
    is exact)."""
    seen: set[str] = set()
    total = 0
    for member, size, is_dir in _members(archive, kind):
        name = _member_name(archive, member)
        if name in seen and not is_dir:
            raise UnpackError(
                f"{archive}: member {name!r} appears more than once (one copy would be dropped "
                "silently); such an archive is refused"
            )
        seen.add(name)
        total += size
    size = archive.stat().st_size
    if total > limits.max_gb * GB:
        raise UnpackError(
            f"{archive}: unpacks to {total / GB:.1f} GB, over data.prepare.max_unpack_gb = "
            f"{limits.max_gb}; raise it if this archive is really that large"
        )
    if total > limits.max_ratio * max(size, 1):
        raise UnpackError(
            f"{archive}: unpacks to {total} bytes from {size} ({total / max(size, 1):.0f}x), "
            f"over data.prepare.max_unpack_ratio = {limits.max_ratio} (a decompression bomb?)"
        )


def _extract(archive: Path, kind: str, into: Path, limits: Limits) -> None:
    if kind == "file":
        _member_name(archive, archive.name)  # a file named like prepare's own is refused too
        shutil.copyfile(archive, into / archive.name)
        return
    try:
        check_members(archive, kind, limits)
        if kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                handle.extractall(into)
        else:
            with tarfile.open(archive) as handle:
                handle.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise CorruptArchive(f"{archive}: truncated or corrupt {kind} archive ({err})") from err


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _undo_interrupted(state: Path, dest: Path, name: str) -> None:
    """Remove what an interrupted earlier run of this source renamed into place (and its
    temporary folder). Every name in the journal must be one name inside ``dest``; a journal
    that is not prepare's (another ``dest``, a foreign name) is refused, not followed."""
    journal = _journal_path(state, name)
    if not journal.exists():
        return
    try:
        record = json.loads(journal.read_text())
    except ValueError as err:
        raise StateError(f"{journal}: not a journal written by prepare ({err})") from err
    if not isinstance(record, dict) or record.get("dest") != str(dest):
        raise StateError(f"{journal}: not a journal of {dest}; remove it by hand")
    tmp = record.get("tmp")
    if not (isinstance(tmp, str) and tmp.startswith(f"{STATE_PREFIX}unpack-{name}-")):
        raise StateError(f"{journal}: temporary folder {tmp!r} is not one prepare makes")
    entries = record.get("entries")
    if not isinstance(entries, list):
        raise StateError(f"{journal}: entries {entries!r} are not a list of names")
    paths = [entry_path(dest, e, journal) for e in entries]
    tmp_path = dest / tmp
    if "/" in tmp or not tmp_path.parent.resolve().is_relative_to(dest.resolve()):
        raise StateError(f"{journal}: temporary folder {tmp!r} is not inside {dest}")
    for path in paths:
        _remove(path)
    shutil.rmtree(tmp_path, ignore_errors=True)
    journal.unlink()


def _journal_entries(journal: Path) -> list[Any]:
    try:
        record = json.loads(journal.read_text())
    except (OSError, ValueError):
        return []
    return record.get("entries") or [] if isinstance(record, dict) else []


def _walk(path: Path) -> Iterator[Path]:
    if path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file())
    else:
        yield path


def _move_into_place(archive: Path, dest: Path, name: str, tmp: Path, journal: Path) -> list[str]:
    """Rename the extracted top-level entries into ``dest`` (journal first); refuses a clash."""
    entries = sorted(p.name for p in tmp.iterdir())
    if not entries:
        raise UnpackError(f"{archive}: the archive is empty")
    clashes = [e for e in entries if (dest / e).exists() or (dest / e).is_symlink()]
    if clashes:
        raise UnpackError(
            f"{archive}: {[str(dest / c) for c in clashes]} already exist(s) and were not "
            f"unpacked by source '{name}'; move them away and run prepare again"
        )
    record = {"dest": str(dest), "tmp": tmp.name, "entries": entries}
    write_text_atomic(journal, json.dumps(record))
    for entry in entries:
        os.replace(tmp / entry, dest / entry)
    return entries


def unpack(
    archive: str | Path,
    dest: str | Path,
    name: str,
    *,
    kind: str,
    state: str | Path,
    info: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
) -> Path:
    """Unpack ``archive`` (zip, tar[.gz|.bz2|.xz] or a plain file) into ``dest``; returns the
    marker path (in the state folder ``state``). Raises :class:`UnpackError` for a bad or unsafe
    archive or an entry already present under ``dest`` that this source did not put there."""
    if kind not in KINDS:
        raise ValueError(f"unknown archive kind {kind!r}; known: {KINDS}")
    archive, dest, state = Path(archive), Path(dest), Path(state)
    dest.mkdir(parents=True, exist_ok=True)
    journal = _journal_path(state, name)
    journal.parent.mkdir(parents=True, exist_ok=True)
    marker = marker_path(state, name)
    marker.unlink(missing_ok=True)  # an untrusted marker must not outlive a new unpack
    with dest_lock(state, dest):
        _undo_interrupted(state, dest, name)
        tmp = Path(tempfile.mkdtemp(prefix=f"{STATE_PREFIX}unpack-{name}-", dir=dest))
        write_text_atomic(journal, json.dumps({"dest": str(dest), "tmp": tmp.name, "entries": []}))
    try:
        _extract(archive, kind, tmp, limits or Limits())
        with dest_lock(state, dest):
            entries = _move_into_place(archive, dest, name, tmp, journal)
            record = {
                "source": name,
                "archive": archive.name,
                "dest": str(dest),
                "entries": entries,
                "files": sum(1 for e in entries for _ in _walk(dest / e)),
                "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(info or {}),
            }
            marker.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(marker, json.dumps(record, indent=1) + "\n")
            journal.unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        # a journal that lists no entries: nothing of this run was renamed into place
        if not marker.exists() and journal.exists() and not _journal_entries(journal):
            journal.unlink()
    return marker


def verify_marker(
    marker: Path, name: str, dest: Path, expect: Mapping[str, Any] | None
) -> str | None:
    """Why the marker of source ``name`` cannot be trusted, or None when it can: it must be a
    JSON object prepare wrote for this source and ``dest``, each ``expect`` key (url, sha256
    when pinned) must match, its size and hash must be recorded, and every entry it lists must be
    one name inside ``dest`` that exists. ``expect`` None: a manual source (``mark``), whose
    marker says so and whose ``dest`` must not be empty."""
    try:
        record = json.loads(marker.read_text())
    except FileNotFoundError:
        return "not prepared"
    except (OSError, ValueError) as err:
        return f"unreadable marker {marker} ({err})"
    if not isinstance(record, dict) or record.get("source") != name:
        return f"marker {marker} is not source '{name}''s"
    if record.get("dest") != str(dest):
        return f"marker {marker} is for {record.get('dest')!r}, not {dest}"
    manual = record.get("manual") is True
    if (expect is None) != manual:
        kind = "manual" if expect is None else "downloaded"
        return f"marker {marker} is not the marker of a {kind} source"
    if expect is None:
        return None if dest.is_dir() and any(dest.iterdir()) else f"{dest} is empty"
    for key, value in expect.items():
        found = record.get(key)
        if key == "sha256" and isinstance(found, str) and value is not None:
            found, value = found.lower(), value.lower()  # hex digits in either case
        if value is not None and found != value:
            return f"marker {marker} has {key} {record.get(key)!r}, the config {value!r}"
    size, digest = record.get("size"), record.get("sha256")
    if not isinstance(size, int) or size < 0 or not isinstance(digest, str) or len(digest) != 64:
        return f"marker {marker} records no archive size and sha256"
    entries = record.get("entries")
    if not isinstance(entries, list) or not entries:
        return f"marker {marker} lists no entries"
    try:
        missing = [e for e in entries if not entry_path(dest, e, marker).exists()]
    except StateError as err:
        return str(err)
    return f"{[str(dest / e) for e in missing]} missing (marker {marker})" if missing else None

"""Atomic unpacking of a downloaded archive into its destination folder, with a marker.

Several sources unpack into one folder (the five image sources of the 665K mixture all go under
``LLaVA-Instruct/images``), so a source cannot replace its destination whole. Instead it is
extracted into a hidden temporary folder beside its entries; a journal lists the top-level
entries about to be renamed into place; the entries are renamed (each rename is atomic); then
the marker ``.vislaw-source-<name>.json`` is written and the journal removed. A run killed at
any point leaves either no marker (and the next run first removes what the journal lists) or a
complete source; a truncated or corrupt archive leaves nothing under a final name.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from vislaw.io.atomic import write_text_atomic

KINDS = ("zip", "tar", "file")


class UnpackError(RuntimeError):
    """An archive that cannot be unpacked (truncated, corrupt, unsafe); names the archive."""


def marker_path(dest: str | Path, name: str) -> Path:
    """The file whose presence says source ``name`` is complete under ``dest``."""
    return Path(dest) / f".vislaw-source-{name}.json"


def _journal_path(dest: Path, name: str) -> Path:
    return dest / f".vislaw-unpack-{name}.journal"


def _tmp_path(dest: Path, name: str) -> Path:
    return dest / f".vislaw-unpack-{name}.tmp"


def _check_member(archive: Path, member: str) -> None:
    """Refuse absolute names and '..' parts: an archive may not write outside its folder."""
    path = PurePosixPath(member.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise UnpackError(f"{archive}: member {member!r} would unpack outside its folder")


def _extract(archive: Path, kind: str, into: Path) -> None:
    if kind == "file":
        shutil.copyfile(archive, into / archive.name)
        return
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as handle:
                for member in handle.namelist():
                    _check_member(archive, member)
                handle.extractall(into)
        else:
            with tarfile.open(archive) as handle:
                for member in handle.getmembers():
                    _check_member(archive, member.name)
                handle.extractall(into, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise UnpackError(f"{archive}: truncated or corrupt {kind} archive ({err})") from err


def _undo_interrupted(dest: Path, name: str) -> None:
    """Remove what an interrupted earlier run of this source renamed into place."""
    journal = _journal_path(dest, name)
    if journal.exists():
        for entry in json.loads(journal.read_text()):
            target = dest / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        journal.unlink()
    shutil.rmtree(_tmp_path(dest, name), ignore_errors=True)


def unpack(
    archive: str | Path,
    dest: str | Path,
    name: str,
    *,
    kind: str,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Unpack ``archive`` (zip, tar[.gz|.bz2|.xz] or a plain file) into ``dest``; returns the
    marker path. Raises :class:`UnpackError` for a bad archive or an entry already present
    under ``dest`` that this source did not put there."""
    if kind not in KINDS:
        raise ValueError(f"unknown archive kind {kind!r}; known: {KINDS}")
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    _undo_interrupted(dest, name)
    tmp = _tmp_path(dest, name)
    tmp.mkdir()
    try:
        _extract(archive, kind, tmp)
        entries = sorted(p.name for p in tmp.iterdir())
        if not entries:
            raise UnpackError(f"{archive}: the archive is empty")
        clashes = [e for e in entries if (dest / e).exists() or (dest / e).is_symlink()]
        if clashes:
            raise UnpackError(
                f"{archive}: {[str(dest / c) for c in clashes]} already exist(s) and were not "
                f"unpacked by source '{name}'; move them away and run prepare again"
            )
        write_text_atomic(_journal_path(dest, name), json.dumps(entries))
        for entry in entries:
            os.replace(tmp / entry, dest / entry)
        files = sum(1 for e in entries for p in [dest / e] for _ in _walk(p))
        marker = {
            "source": name,
            "archive": archive.name,
            "entries": entries,
            "files": files,
            "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(info or {}),
        }
        write_text_atomic(marker_path(dest, name), json.dumps(marker, indent=1) + "\n")
        _journal_path(dest, name).unlink()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return marker_path(dest, name)


def _walk(path: Path):
    if path.is_dir():
        yield from (p for p in path.rglob("*") if p.is_file())
    else:
        yield path

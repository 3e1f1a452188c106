"""A small resumable HTTP(S) client for the dataset archives that are not on the Hub.

Why not plain ``urllib.request.urlretrieve``: the archives are large (COCO train2017 is ~18 GB),
login-node connections drop, servers and proxies misbehave, and a truncated or spliced file must
never be mistaken for a finished one. So a download goes to ``<target>.part``; it is complete
only when its length is known (``Content-Length``, or the total of ``Content-Range``) and
matched, or, when the server sends no length, when a pinned SHA-256 matches (without either it is
accepted with a loud warning and recorded as unverified). It resumes with ``Range`` and
``If-Range`` (the ETag or Last-Modified of the first answer, kept in ``<target>.part.json``): a
206 must start exactly at the part's size and carry the same validators and total, anything else
means the file changed and the download starts over from zero; a part with no validator is only
resumed when a hash is pinned. A transfer slower than ``min_bytes_per_s`` over ``window_s``
seconds is cut as stalled (and retried). A hash mismatch deletes the part; only then is the part
renamed to its final name, with ``<target>.vislaw.json`` recording its size, hash and whether it
was verified.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
USER_AGENT = "vislaw-prepare/1 (+https://github.com/)"


class DownloadError(RuntimeError):
    """A download that failed for good (after its retries); the message names the URL."""


class StallError(ConnectionError):
    """The server sent less than the minimum rate over the stall window (retried, resumable)."""


class UnverifiedDownload(UserWarning):
    """A download with neither a length from the server nor a pinned hash to check it by."""


# Errors after which resuming can help: the connection, not the request, failed.
TRANSIENT = (
    ConnectionError,
    TimeoutError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    urllib.error.URLError,
)


@dataclass(frozen=True)
class Stall:
    """Stall detection: fewer than ``min_bytes_per_s`` x ``window_s`` bytes in any window of
    ``window_s`` seconds cuts the transfer (0 turns it off; ``data.prepare.stall_*``)."""

    min_bytes_per_s: int = 1024
    window_s: float = 120.0


@dataclass(frozen=True)
class Downloaded:
    """A finished download: its file, size, SHA-256 and whether its completeness was checked
    (length matched or pinned hash matched)."""

    path: Path
    size: int
    sha256: str
    verified: bool


def sha256_file(path: str | Path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def part_path(target: str | Path) -> Path:
    """Where an unfinished download of ``target`` lives (resumed from its size)."""
    target = Path(target)
    return target.with_name(f"{target.name}.part")


def _part_meta(target: Path) -> Path:
    return target.with_name(f"{target.name}.part.json")


def record_path(target: str | Path) -> Path:
    """The record of a finished download (url, size, sha256, verified)."""
    target = Path(target)
    return target.with_name(f"{target.name}.vislaw.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _discard(target: Path) -> None:
    part_path(target).unlink(missing_ok=True)
    _part_meta(target).unlink(missing_ok=True)


def _open(url: str, offset: int, meta: dict[str, Any], timeout: float) -> Any:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        validator = meta.get("etag") if not str(meta.get("etag")).startswith("W/") else None
        validator = validator or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only


def _content_range(url: str, value: str | None) -> tuple[int, int, int | None]:
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", (value or "").strip())
    if not match:
        raise DownloadError(f"{url}: 206 answer with an unreadable Content-Range {value!r}")
    start, end, total = match.groups()
    return int(start), int(end), None if total == "*" else int(total)


def _answer(url: str, response: Any, offset: int, meta: dict[str, Any]) -> tuple[int, int | None]:
    """(where the body starts, the file's total length or None) from the response headers;
    raises _Changed when the server's file is no longer the one the part holds."""
    length = response.headers.get("Content-Length")
    length = int(length) if length is not None and length.isdigit() else None
    if response.status != 206:
        return 0, length  # a whole file (a server ignoring Range, or If-Range saying changed)
    start, end, total = _content_range(url, response.headers.get("Content-Range"))
    if length is not None and length != end - start + 1:
        raise DownloadError(
            f"{url}: Content-Length {length} disagrees with Content-Range {start}-{end}"
        )
    if start == 0:
        return 0, total
    if start != offset:
        raise _Changed(f"206 starts at byte {start}, not at {offset}")
    for key, header in (("etag", "ETag"), ("last_modified", "Last-Modified")):
        now = response.headers.get(header)
        if meta.get(key) and now and now != meta[key]:
            raise _Changed(f"{header} changed from {meta[key]} to {now}")
    if meta.get("total") is not None and total is not None and total != meta["total"]:
        raise _Changed(f"its length changed from {meta['total']} to {total}")
    return start, total


class _Changed(Exception):
    """The file on the server is not the one the part was cut from: start over from zero."""


def _copy_body(response: Any, handle: Any, bar: Any, stall: Stall) -> None:
    """Copy the body as it arrives (``read1``: no waiting for a full chunk), cutting a transfer
    slower than ``stall`` with StallError."""
    window_start, window_bytes = time.monotonic(), 0
    while block := response.read1(CHUNK):
        handle.write(block)
        bar.update(len(block))
        window_bytes += len(block)
        elapsed = time.monotonic() - window_start
        if stall.min_bytes_per_s and elapsed >= stall.window_s:
            if window_bytes < stall.min_bytes_per_s * elapsed:
                raise StallError(
                    f"stalled: {window_bytes} bytes in {elapsed:.1f} s, under the minimum "
                    f"{stall.min_bytes_per_s} bytes/s (data.prepare.stall_min_bytes_per_s)"
                )
            window_start, window_bytes = time.monotonic(), 0


def _fetch(
    url: str, target: Path, timeout: float, progress: bool, stall: Stall, pinned: bool
) -> int | None:
    """Append the rest of ``url`` to the part; returns the file's total length (None when the
    server gives none). Raises a TRANSIENT error when cut short."""
    from tqdm import tqdm

    part, meta_path = part_path(target), _part_meta(target)
    meta = _read_json(meta_path)
    resumable = meta.get("url") == url and (meta.get("etag") or meta.get("last_modified") or pinned)
    if part.exists() and not resumable:
        _discard(target)  # a part nobody can vouch for: start over
    offset = part.stat().st_size if part.exists() else 0
    if stall.min_bytes_per_s:
        timeout = min(timeout, stall.window_s)
    try:
        response = _open(url, offset, meta, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset and meta.get("total") == offset:
            return offset  # the range starts at the end: nothing is missing
        raise
    with response:
        try:
            offset, total = _answer(url, response, offset, meta)
        except _Changed as err:
            print(f"vislaw prepare: {url}: {err}; starting over from zero", file=sys.stderr)
            _discard(target)
            response.close()
            return _fetch(url, target, timeout, progress, stall, pinned)
        meta = {
            "url": url,
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
            "total": total,
        }
        _write_json(meta_path, meta)
        with (
            open(part, "r+b" if offset else "wb") as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=target.name,
                disable=not progress,
                mininterval=1 if sys.stderr.isatty() else 30,
            ) as bar,
        ):
            handle.seek(offset)
            handle.truncate()
            _copy_body(response, handle, bar, stall)
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"connection closed after {size} of {total} bytes")
    if total is not None and size > total:
        _discard(target)
        raise DownloadError(f"{url}: got {size} bytes, more than the announced {total}")
    return total


def _finished(url: str, target: Path, expected: str | None) -> Downloaded | None:
    """The download already under ``target`` when its record says it is this URL's (and hash)."""
    record = _read_json(record_path(target))
    size = target.stat().st_size
    if record.get("url") != url or record.get("size") != size:
        return None
    if expected is not None and record.get("sha256") != expected:
        return None
    return Downloaded(target, size, str(record.get("sha256")), bool(record.get("verified")))


def _finish(url: str, target: Path, total: int | None, expected: str | None) -> Downloaded:
    """Check the complete part (length or hash), record it and give it its final name."""
    part = part_path(target)
    found = sha256_file(part)
    if expected is not None and found != expected:
        _discard(target)
        raise DownloadError(
            f"{url}: sha256 mismatch: expected {expected}, got {found}; the download was "
            "deleted (a changed file on the server, or a wrong hash in data.sources)"
        )
    verified = total is not None or expected is not None
    if not verified:
        message = (
            f"{url}: the server sent no length and data.sources pins no sha256, so a cut "
            f"download cannot be told from a complete one; accepted as UNVERIFIED (sha256 "
            f"{found}): pin the publisher's hash to check it"
        )
        print(f"vislaw prepare: WARNING: {message}", file=sys.stderr)
        warnings.warn(message, UnverifiedDownload, stacklevel=3)
    size = part.stat().st_size
    record = {"url": url, "size": size, "sha256": found, "verified": verified}
    _write_json(record_path(target), record)
    os.replace(part, target)
    _part_meta(target).unlink(missing_ok=True)
    return Downloaded(target, size, found, verified)


def download(
    url: str,
    target: str | Path,
    *,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 2.0,
    stall: Stall | None = None,
) -> Downloaded:
    """Download ``url`` to ``target`` (resuming a ``.part`` left by an earlier try).

    A finished ``target`` is kept when its record names this URL and size (and ``sha256``, when
    given). Raises :class:`DownloadError` naming the URL (and both hashes on a mismatch).
    Nothing but the complete file, checked by length or hash, is ever under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None
    stall = stall or Stall()
    if target.exists():
        done = _finished(url, target, expected)
        if done is not None:
            return done
        target.unlink()  # a stale or foreign file under the name: fetch it again
    for attempt in range(retries + 1):
        try:
            total = _fetch(url, target, timeout, progress, stall, expected is not None)
            break
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
        except TRANSIENT as err:
            part = part_path(target)
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download interrupted after {have} bytes ({err}); the partial "
                    f"file {part} is kept: run the same command again to resume"
                ) from err
            time.sleep(backoff * 2**attempt)
    return _finish(url, target, total, expected)

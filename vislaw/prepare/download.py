"""A small resumable HTTP(S) client for the dataset archives that are not on the Hub.

Why not plain ``urllib.request.urlretrieve``: the archives are large (COCO train2017 is ~18 GB),
login-node connections drop, and a truncated file must never be mistaken for a finished one.
So a download goes to ``<target>.part``, resumes from its size with an HTTP ``Range`` request,
shows a tqdm bar, is checked against the expected SHA-256, and only then is renamed to its final
name. A hash mismatch deletes the ``.part`` file (resuming a wrong file can never fix it) and
stops with both hashes named; an interrupted transfer keeps it, so the next run resumes.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20
USER_AGENT = "vislaw-prepare/1 (+https://github.com/)"
# Errors after which resuming can help: the connection, not the request, failed.
TRANSIENT = (
    ConnectionError,
    TimeoutError,
    http.client.IncompleteRead,
    http.client.RemoteDisconnected,
    urllib.error.URLError,
)


class DownloadError(RuntimeError):
    """A download that failed for good (after its retries); the message names the URL."""


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


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - http(s) only


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    """Append the rest of ``url`` to ``part``; raises a TRANSIENT error when cut short."""
    from tqdm import tqdm

    offset = part.stat().st_size if part.exists() else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # the range starts at the end: nothing is missing
            return
        raise
    with response:
        if offset and response.status != 206:  # the server ignored Range: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        mode = "ab" if offset else "wb"
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
                mininterval=1 if sys.stderr.isatty() else 30,
            ) as bar,
        ):
            while block := response.read(CHUNK):
                handle.write(block)
                bar.update(len(block))
    size = part.stat().st_size
    if total is not None and size < total:
        raise ConnectionError(f"connection closed after {size} of {total} bytes")


def download(
    url: str,
    target: str | Path,
    *,
    sha256: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: bool = True,
    backoff: float = 2.0,
) -> Path:
    """Download ``url`` to ``target`` (resuming a ``.part`` left by an earlier try).

    A finished ``target`` is kept when it matches ``sha256`` (or when no hash is given).
    Returns ``target``; raises :class:`DownloadError` naming the URL (and both hashes on a
    mismatch). Nothing but the complete, verified file is ever under the final name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    expected = sha256.lower() if sha256 else None
    if target.exists():
        if expected is None or sha256_file(target) == expected:
            return target
        target.unlink()  # a stale or foreign file under the name: fetch it again
    part = part_path(target)
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, timeout, progress)
            break
        except urllib.error.HTTPError as err:
            raise DownloadError(f"{url}: HTTP {err.code} {err.reason}") from err
        except TRANSIENT as err:
            have = part.stat().st_size if part.exists() else 0
            if attempt == retries:
                raise DownloadError(
                    f"{url}: download interrupted after {have} bytes ({err}); the partial "
                    f"file {part} is kept: run the same command again to resume"
                ) from err
            time.sleep(backoff * 2**attempt)
    if expected is not None:
        found = sha256_file(part)
        if found != expected:
            part.unlink()
            raise DownloadError(
                f"{url}: sha256 mismatch: expected {expected}, got {found}; the download was "
                "deleted (a changed file on the server, or a wrong hash in data.sources)"
            )
    os.replace(part, target)
    return target

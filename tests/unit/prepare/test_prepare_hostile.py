"""prepare against hostile servers and archives (issue 23, unpacking and downloading).

Each test runs a real http.server on 127.0.0.1 that answers as an attacker or a broken server
would (planted state files in archives, cut bodies, lying lengths, ranges, changed files,
stalls, bombs, duplicate members) and checks that prepare deletes nothing outside its folder,
trusts no marker it did not write, and never calls a partial or spliced file complete.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vislaw.config import check_config
from vislaw.prepare import status
from vislaw.prepare.download import DownloadError, download, part_path
from vislaw.prepare.sources import prepare_source, sources
from vislaw.prepare.unpack import UnpackError

Route = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A 127.0.0.1 server whose paths answer with test-written functions; it records each
    request's path and headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                route(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.stop()


def send(
    handler: BaseHTTPRequestHandler,
    body: bytes,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    length: int | None = -1,
) -> None:
    """Answer with ``body``; ``length`` -1 sends the true Content-Length, None none at all (the
    connection then closes after the body), another number is a lie."""
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    if length is not None:
        handler.send_header("Content-Length", str(len(body) if length == -1 else length))
    else:
        handler.send_header("Connection", "close")
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()
    handler.close_connection = True


def _range_start(handler: BaseHTTPRequestHandler) -> int | None:
    value = handler.headers.get("Range")
    return int(value.split("=")[1].split("-")[0]) if value else None


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as handle:
        for name, data in entries:
            handle.writestr(name, data)
    return buffer.getvalue()


def _config(tmp_path: Path, entries: dict, **prepare: float) -> dict:
    data: dict = {"root": str(tmp_path / "data"), "sources": entries}
    if prepare:
        data["prepare"] = prepare
    return check_config(
        {
            "run": "t",
            "encoders": {
                "clip224": {"family": "clip", "tiny": True, "input_size": 56, "patch_size": 14}
            },
            "data": data,
        }
    )


def _serve(server: Server, path: str, body: bytes, **kwargs) -> str:
    server.routes[path] = lambda h: send(h, body, **kwargs)
    return server.url(path)


# ---- unpacking: state files out of the archives' reach -------------------------------------------
def test_planted_journal_deletes_nothing_outside(server, tmp_path):
    """Source a's archive plants the journal of source b (old place: in the shared dest), and
    b's journal in the state folder lists an absolute path and a '..' path: preparing b deletes
    neither victim."""
    victim = tmp_path / "victim"  # <data>/shared/../../victim
    absolute = tmp_path / "absvictim"
    for folder in (victim, absolute):
        folder.mkdir()
        (folder / "precious.txt").write_text("keep me")
    planted = json.dumps([str(absolute), "../../victim"]).encode()
    url_a = _serve(
        server,
        "/a.zip",
        _zip([("a/x.txt", b"a"), (".vislaw-unpack-b.journal", planted)]),
    )
    url_b = _serve(server, "/b.zip", _zip([("b/y.txt", b"b")]))
    config = _config(
        tmp_path,
        {
            "a": {"for": "instruct", "url": url_a, "unpack": "zip", "dest": "shared"},
            "b": {"for": "instruct", "url": url_b, "unpack": "zip", "dest": "shared"},
        },
    )
    refusals: list[str] = []
    try:
        prepare_source(config, "a", progress=False)
    except UnpackError as err:
        refusals.append(str(err))
    state_journal = tmp_path / "data" / ".vislaw-state" / "unpack" / "b.journal"
    state_journal.parent.mkdir(parents=True, exist_ok=True)
    dest = str(tmp_path / "data" / "shared")
    record = {"dest": dest, "tmp": ".vislaw-unpack-b-x", "entries": [str(absolute), "../../victim"]}
    state_journal.write_text(json.dumps(record))
    try:
        prepare_source(config, "b", progress=False)
    except RuntimeError as err:
        refusals.append(str(err))
    assert (victim / "precious.txt").read_text() == "keep me"
    assert (absolute / "precious.txt").read_text() == "keep me"
    # both were refused by name: a's archive (the state prefix) and b's foreign journal entry
    assert len(refusals) == 2, refusals
    assert ".vislaw-unpack-b.journal" in refusals[0] and "b.journal" in refusals[1]


def test_planted_marker_does_not_count_as_prepared(server, tmp_path):
    """An archive unpacking into data.root carries markers for source 'never' (at the old place
    and the new one); 'never' was never fetched, so it must stay missing. A forged marker in the
    state folder with another URL or an entry outside dest is not trusted either."""
    forged = json.dumps({"source": "never", "entries": ["SPair-71k"], "url": "x"}).encode()
    url = _serve(
        server,
        "/evil.zip",
        _zip(
            [
                ("SPair-71k/a.txt", b"a"),
                (".vislaw-source-never.json", forged),
                (".vislaw-state/sources/never.json", forged),
            ]
        ),
    )
    config = _config(
        tmp_path,
        {
            "evil": {"for": "spair", "url": url, "unpack": "zip", "dest": "."},
            "never": {"for": "spair", "url": server.url("/never.zip"), "unpack": "zip"},
        },
    )
    try:
        prepare_source(config, "evil", progress=False)
    except UnpackError as err:  # refused: its members start with the state prefix
        assert "vislaw-" in str(err)
    gone = status.missing(status.data_requirements(config, "spair"))
    assert "never" in {r.what.split("'")[1] for r in gone}
    never = sources(config)["never"]
    (tmp_path / "data" / "SPair-71k").mkdir(parents=True, exist_ok=True)
    for entries, url_seen in ((["SPair-71k"], "http://elsewhere/never.zip"), (["../.."], None)):
        record = {
            "source": "never",
            "dest": str(never.dest),
            "url": url_seen or never.url,
            "size": 1,
            "sha256": "0" * 64,
            "entries": entries,
        }
        never.marker.parent.mkdir(parents=True, exist_ok=True)
        never.marker.write_text(json.dumps(record))
        assert never in [s for s in sources(config).values()]
        assert status.missing(status.data_requirements(config, "spair")), record


def test_manual_marker_counts_only_for_a_manual_source(server, tmp_path):
    """`mark` writes a manual marker; the same marker for a downloaded source is not trusted."""
    from vislaw.prepare.sources import check_prepared, mark_manual_source

    config = _config(
        tmp_path,
        {
            "ocr": {"for": "instruct", "manual": "by hand", "dest": "ocr"},
            "coco": {"for": "instruct", "url": server.url("/c.zip"), "dest": "ocr"},
        },
    )
    (tmp_path / "data" / "ocr").mkdir(parents=True)
    (tmp_path / "data" / "ocr" / "1.jpg").write_bytes(b"x")
    ocr, coco = sources(config)["ocr"], sources(config)["coco"]
    mark_manual_source(config, "ocr")
    assert check_prepared(ocr) is None
    record = json.loads(ocr.marker.read_text())
    coco.marker.write_text(json.dumps({**record, "source": "coco"}))
    assert "not the marker of a downloaded source" in str(check_prepared(coco))
    assert [
        r.what.split("'")[1] for r in status.missing(status.data_requirements(config, "instruct"))
    ] == ["coco"]


def test_archive_member_under_the_state_prefix_is_refused(server, tmp_path):
    url = _serve(server, "/s.zip", _zip([(".vislaw-state/locks/x", b""), ("ok.txt", b"")]))
    config = _config(tmp_path, {"s": {"for": "spair", "url": url, "unpack": "zip", "dest": "."}})
    with pytest.raises(UnpackError, match="prefix of prepare's own files"):
        prepare_source(config, "s", progress=False)
    assert not (tmp_path / "data" / "ok.txt").exists()


def test_zip_bomb_is_refused_before_extraction(server, tmp_path):
    bomb = _zip([("bomb/zeros.bin", bytes(30_000_000))])  # ~30 KB -> 30 MB
    url = _serve(server, "/bomb.zip", bomb)
    entry = {"for": "spair", "url": url, "unpack": "zip", "dest": "bomb"}
    with pytest.raises(UnpackError, match="max_unpack_ratio"):
        prepare_source(_config(tmp_path, {"bomb": entry}), "bomb", progress=False)
    assert not any((tmp_path / "data" / "bomb").iterdir())
    # the total-size guard, on its own: a limit of 1 MB refuses it even with the ratio allowed
    config = _config(tmp_path, {"bomb": entry}, max_unpack_ratio=10_000, max_unpack_gb=0.001)
    with pytest.raises(UnpackError, match="max_unpack_gb"):
        prepare_source(config, "bomb", progress=False)
    assert not any((tmp_path / "data" / "bomb").iterdir())


def test_duplicate_zip_members_are_refused(server, tmp_path):
    with pytest.warns(UserWarning, match="Duplicate name"):
        archive = _zip([("d/a.txt", b"first"), ("d/a.txt", b"second")])
    url = _serve(server, "/dup.zip", archive)
    config = _config(tmp_path, {"dup": {"for": "spair", "url": url, "unpack": "zip"}})
    with pytest.raises(UnpackError, match="more than once"):
        prepare_source(config, "dup", progress=False)
    assert not (tmp_path / "data" / "d").exists()


def test_sources_sharing_a_dest_prepare_together(server, tmp_path):
    """config.yaml's vg_part1 and vg_part2 share dest vg: prepared at the same time, both end up
    complete and verified, and neither disturbs the other."""
    url1 = _serve(server, "/images.zip", _zip([("VG_100K/1.jpg", b"1")]))
    url2 = _serve(server, "/images2.zip", _zip([("VG_100K_2/2.jpg", b"2")]))
    config = _config(
        tmp_path,
        {
            "vg_part1": {"for": "instruct", "url": url1, "unpack": "zip", "dest": "vg"},
            "vg_part2": {"for": "instruct", "url": url2, "unpack": "zip", "dest": "vg"},
        },
    )
    errors: list[BaseException] = []

    def run(name: str) -> None:
        try:
            prepare_source(config, name, progress=False)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("vg_part1", "vg_part2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    vg = tmp_path / "data" / "vg"
    assert sorted(p.name for p in vg.iterdir()) == ["VG_100K", "VG_100K_2"]
    assert status.missing(status.data_requirements(config, "instruct")) == []


# ---- downloading -----------------------------------------------------------------------------------
def test_body_without_length_cut_in_half(server, tmp_path):
    """No Content-Length, the connection closes halfway: with a pinned hash the download fails
    and nothing is under the final name; without one it is accepted only with a warning and
    recorded as unverified in the marker."""
    payload = bytes(range(256)) * 400
    url = _serve(server, "/half.bin", payload[: len(payload) // 2], length=None)
    target = tmp_path / "dl" / "half.bin"
    pinned = hashlib.sha256(payload).hexdigest()
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download(url, target, sha256=pinned, progress=False, retries=0)
    assert not target.exists()
    config = _config(tmp_path, {"half": {"for": "spair", "url": url, "unpack": "file"}})
    with pytest.warns(UserWarning, match="UNVERIFIED"):
        marker = prepare_source(config, "half", progress=False)
    assert json.loads(marker.read_text())["verified"] is False
    assert status.unverified(config) == ["half"]  # `prepare status` warns about it


def test_lying_content_length_on_resume(server, tmp_path):
    """The resumed 206 says Content-Range 'rest of the file' but Content-Length (and body) a
    quarter: the old client took offset + Content-Length as the total and called it complete."""
    payload = bytes(range(256)) * 800
    half, quarter = len(payload) // 2, len(payload) // 4

    def route(h: BaseHTTPRequestHandler) -> None:
        start = _range_start(h)
        if start is None:  # first try: the full length announced, half sent
            send(h, payload[:half], length=len(payload), headers={"ETag": '"e1"'})
            return
        rng = f"bytes {start}-{len(payload) - 1}/{len(payload)}"
        body = payload[start : start + quarter]
        send(h, body, status=206, headers={"Content-Range": rng, "ETag": '"e1"'})

    server.routes["/lie.bin"] = route
    target = tmp_path / "lie.bin"
    with pytest.raises(DownloadError):
        download(server.url("/lie.bin"), target, progress=False, retries=1, backoff=0.01)
    assert not target.exists()


def test_206_starting_at_zero_does_not_splice(server, tmp_path):
    """Resumed at half, the server answers 206 with Content-Range 0-...: the old client appended
    the whole file to its half (1.5x the size) and called it complete."""
    payload = bytes(range(256)) * 800
    half = len(payload) // 2

    def route(h: BaseHTTPRequestHandler) -> None:
        if _range_start(h) is None:
            send(h, payload[:half], length=len(payload), headers={"ETag": '"e1"'})
            return
        rng = f"bytes 0-{len(payload) - 1}/{len(payload)}"
        send(h, payload, status=206, headers={"Content-Range": rng, "ETag": '"e1"'})

    server.routes["/zero.bin"] = route
    target = tmp_path / "zero.bin"
    download(server.url("/zero.bin"), target, progress=False, retries=1, backoff=0.01)
    assert target.read_bytes() == payload


def test_file_changed_between_tries_restarts(server, tmp_path):
    """The file changes on the server between tries (new ETag) and the server ignores If-Range:
    the old client spliced the old half and the new half. The resume must carry If-Range with
    the first ETag, and the changed file must be fetched whole."""
    old, new = bytes(100_000), bytes([7]) * 100_000
    state = {"version": old, "etag": '"v1"'}

    def route(h: BaseHTTPRequestHandler) -> None:
        data, etag = state["version"], state["etag"]
        start = _range_start(h)
        if start is None:
            if data is old:  # first try: cut at half
                send(h, data[:50_000], length=len(data), headers={"ETag": etag})
            else:
                send(h, data, headers={"ETag": etag})
            return
        state["version"], state["etag"] = new, '"v2"'  # changed just before the resume
        rng = f"bytes {start}-{len(new) - 1}/{len(new)}"
        send(h, new[start:], status=206, headers={"Content-Range": rng, "ETag": '"v2"'})

    server.routes["/changing.bin"] = route
    target = tmp_path / "changing.bin"
    download(server.url("/changing.bin"), target, progress=False, retries=1, backoff=0.01)
    assert target.read_bytes() == new
    resumed = [headers for _, headers in server.requests if headers.get("Range")]
    assert resumed and resumed[0].get("If-Range") == '"v1"'


def test_stalled_server_fails_within_the_window(server, tmp_path):
    """1 byte every 2 s: the transfer is cut as stalled within the (tiny) window, not after the
    whole body, and the partial file is kept for the next run."""
    from vislaw.prepare.download import Stall

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "10")
        h.end_headers()
        for _ in range(10):
            try:
                h.wfile.write(b"x")
                h.wfile.flush()
            except OSError:
                return
            time.sleep(2)

    server.routes["/slow.bin"] = route
    target = tmp_path / "slow.bin"
    began = time.monotonic()
    with pytest.raises(DownloadError, match="interrupted"):
        download(
            server.url("/slow.bin"),
            target,
            progress=False,
            retries=0,
            stall=Stall(min_bytes_per_s=100, window_s=0.5),
        )
    assert time.monotonic() - began < 5
    assert not target.exists()


def test_cut_archive_is_not_kept_under_its_final_name(server, tmp_path):
    """A tar.gz cut in half without a length is accepted as unverified, fails to unpack, and is
    deleted: the next run fetches it again (the old client kept the cut file and failed forever).
    """
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for i in range(4):
            data = os.urandom(50_000)
            info = tarfile.TarInfo(f"t/{i}.bin")
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    archive = buffer.getvalue()
    url = _serve(server, "/t.tar.gz", archive[: len(archive) // 2], length=None)
    config = _config(tmp_path, {"t": {"for": "spair", "url": url, "unpack": "tar"}})
    with pytest.warns(UserWarning), pytest.raises(UnpackError, match="truncated or corrupt"):
        prepare_source(config, "t", progress=False)
    downloads = tmp_path / "data" / ".vislaw-state" / "downloads" / "t"
    assert not (downloads / "t.tar.gz").exists() and not part_path(downloads / "t.tar.gz").exists()
    _serve(server, "/t.tar.gz", archive)
    marker = prepare_source(config, "t", progress=False)
    assert json.loads(marker.read_text())["verified"] is True
    assert len(list((tmp_path / "data" / "t").iterdir())) == 4


def test_second_prepare_waits_for_the_lock(server, tmp_path):
    """Two prepare runs of one source at once: the second waits for the first's lock and then
    finds it prepared; the server sees one download, not two writers on one part file."""
    payload = _zip([("p/a.bin", bytes(range(256)) * 100)])

    def slow(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        step = len(payload) // 10 + 1
        for i in range(0, len(payload), step):
            h.wfile.write(payload[i : i + step])
            h.wfile.flush()
            time.sleep(0.1)

    server.routes["/p.zip"] = slow
    config = _config(
        tmp_path, {"p": {"for": "spair", "url": server.url("/p.zip"), "unpack": "zip"}}
    )
    results: list[object] = []

    def run() -> None:
        try:
            results.append(prepare_source(config, "p", progress=False))
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            results.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join(60)
    assert len(results) == 2 and all(isinstance(r, Path) for r in results), results
    assert [p for p, _ in server.requests] == ["/p.zip"]
    assert (tmp_path / "data" / "p" / "a.bin").read_bytes() == bytes(range(256)) * 100


def test_marker_counts_only_for_the_pinned_hash(server, tmp_path):
    """A prepared source whose config then pins another sha256 is no longer prepared; the same
    hash written in upper case still is."""
    archive = _zip([("h/a.txt", b"a")])
    entry = {"for": "spair", "url": _serve(server, "/h.zip", archive), "unpack": "zip"}
    prepare_source(_config(tmp_path, {"h": entry}), "h", progress=False)
    digest = hashlib.sha256(archive).hexdigest()
    for pinned, prepared in (("f" * 64, False), (digest.upper(), True)):
        config = _config(tmp_path, {"h": {**entry, "sha256": pinned}})
        assert (status.missing(status.data_requirements(config, "spair")) == []) is prepared

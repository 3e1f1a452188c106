"""A loopback Hugging Face Hub: a threaded HTTP server on 127.0.0.1 that speaks the part of the
Hub HTTP API the installed huggingface_hub (and ``datasets`` through it) calls, so that
``prepare`` runs huggingface_hub's own download code (``snapshot_download``: revision info,
tree listing, ``resolve`` HEAD + GET, ETags, commit headers, Range resume, gated 401s) with
``HF_ENDPOINT`` pointing here. Nothing of huggingface_hub is mocked; the tests change only where
it connects.

What it answers, as huggingface.co does (read from huggingface_hub's file_download.py,
_snapshot_download.py, hf_api.py and utils/_http.py ``hf_raise_for_status``):

- ``GET /api/{models|datasets}/{id}[/revision/{rev}]``: ``id``, ``sha``, ``siblings``, ``gated``.
- ``GET /api/{models|datasets}/{id}/tree/{rev}[/{path}]?recursive=``: files with ``oid`` (git
  blob sha1), ``size`` and, for LFS files, ``lfs: {oid: sha256, size, pointerSize}``; folders.
- ``POST /api/{models|datasets}/{id}/paths-info/{rev}`` (form ``paths=``), as HfFileSystem asks.
- ``HEAD|GET /[datasets/]{id}/resolve/{rev}/{path}``: a regular file is answered 200 with
  ``ETag`` (its git oid), ``X-Repo-Commit`` and ``Content-Length``; an LFS file (by the default
  ``.gitattributes`` suffixes) 302 to a second, "CDN" server on another port with
  ``X-Linked-Etag`` (its sha256) and ``X-Linked-Size``, which huggingface_hub does not follow on
  HEAD (another origin) and fetches without the token, as from the real CDN. Both honour
  ``Range: bytes=a-[b]`` with 206 and ``Content-Range``.
- A gated repo without an accepted token: 401 (no token) or 403 (a token not on the list) with
  ``X-Error-Code: GatedRepo``; an unknown repo: 401 ``RepoNotFound``; an unknown revision: 404
  ``RevisionNotFound``; a missing file: 404 ``EntryNotFound`` with ``X-Repo-Commit``.

Knobs for the failure tests: :meth:`LoopbackHub.interrupt` (drop the connection after N bytes
of a file, a given number of times) and ``ignore_range`` (a server that ignores Range, to check
that a resume test would notice).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, quote, unquote, urlsplit

# Suffixes the Hub's default .gitattributes (models and datasets) stores in LFS.
LFS_SUFFIXES = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".model",
    ".parquet", ".arrow", ".zip", ".gz", ".tgz", ".tar", ".npy", ".npz", ".pkl", ".pickle",
    ".png", ".jpg", ".jpeg", ".webp",
)  # fmt: skip
POINTER_SIZE = 134  # bytes of a git-lfs pointer file, as the Hub reports in ``pointerSize``
_API = re.compile(r"^/api/(models|datasets)/(?P<id>[^/]+/[^/]+)(?P<rest>/.*)?$")
_RESOLVE = re.compile(r"^/(?:(?P<type>datasets)/)?(?P<id>[^/]+/[^/]+)/resolve/(?P<rest>.+)$")


@dataclass(frozen=True)
class Blob:
    """One served file: where its bytes are, and the ids the Hub gives it."""

    path: Path
    size: int
    git_oid: str  # sha1 of "blob <size>\\0<bytes>", the Hub's ETag of a regular file
    sha256: str  # the LFS oid, the Hub's X-Linked-Etag of an LFS file
    lfs: bool


@dataclass
class Repo:
    """A repo's commits (sha -> path -> Blob) and refs (branch/tag -> sha)."""

    repo_type: str
    repo_id: str
    gated: bool = False
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def commit(self, revision: str) -> str | None:
        """The commit sha a revision (branch, tag or full sha) names, or None."""
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


@dataclass
class Interruption:
    """Drop the connection after ``after`` bytes of the file (absolute offset), ``times`` times."""

    repo_id: str
    filename: str
    after: int
    times: int


def _blob(path: Path) -> Blob:
    data = path.read_bytes()
    git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    lfs = path.name.endswith(LFS_SUFFIXES)
    return Blob(path, len(data), git_oid, hashlib.sha256(data).hexdigest(), lfs)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) of a ``bytes=a-[b]`` header within ``size``, or None (serve it all)."""
    match = re.fullmatch(r"bytes=(\d+)-(\d*)", (header or "").strip())
    if match is None:
        return None
    first = int(match[1])
    last = min(int(match[2]) if match[2] else size - 1, size - 1)
    return first, last


class LoopbackHub:
    """A Hub on ``endpoint`` (put it in ``HF_ENDPOINT``) serving the repos published to it.

    ``requests`` logs ``(method, path, headers)`` of every request, in order; ``responses`` logs
    ``(status, path, body bytes sent)``. Files are copied under ``root`` on publish."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.responses: list[tuple[int, str, int]] = []
        self.tokens: set[str] = set()  # tokens that accepted every gated repo's licence
        self.interruptions: list[Interruption] = []
        self.ignore_range = False
        self._lock = threading.Lock()
        self._servers = [self._server(self._hub), self._server(self._cdn)]
        self.endpoint = f"http://127.0.0.1:{self._servers[0].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # ---- publishing ------------------------------------------------------------------------
    def publish(
        self,
        repo_id: str,
        folder: Path,
        *,
        repo_type: str = "model",
        revision: str | None = None,
        gated: bool = False,
    ) -> str:
        """Serve the files of ``folder`` as a new commit of ``repo_id``; returns its 40-hex
        sha; ``main`` (and ``revision`` if given, a branch/tag name) point at it."""
        if repo_type not in ("model", "dataset"):
            raise ValueError(f"repo_type {repo_type!r}: the loopback Hub serves model|dataset")
        folder = Path(folder)
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        if not files:
            raise ValueError(f"publish {repo_id}: {folder} holds no file")
        digest = hashlib.sha1(f"{repo_type}:{repo_id}:{len(self.repos)}".encode())
        for path in files:
            digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
        with self._lock:
            repo = self.repos.setdefault(
                (repo_type, repo_id), Repo(repo_type, repo_id, gated=gated)
            )
            digest.update(str(len(repo.commits)).encode())
            sha = digest.hexdigest()
            store = self.root / f"{repo_type}s" / repo_id / sha
            blobs = {}
            for path in files:
                name = path.relative_to(folder).as_posix()
                (store / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, store / name)
                blobs[name] = _blob(store / name)
            repo.commits[sha] = blobs
            repo.gated = repo.gated or gated
            repo.refs["main"] = sha
            if revision:
                repo.refs[revision] = sha
        return sha

    def interrupt(self, repo_id: str, filename: str, *, after: int, times: int = 1) -> None:
        """Drop the connection of the next ``times`` GETs of ``filename`` once ``after`` bytes
        of it (counted from the file's start) have been sent: a link that fails mid-file."""
        self.interruptions.append(Interruption(repo_id, filename, after, times))

    def blob(self, repo_id: str, filename: str, *, repo_type: str = "model", revision="main"):
        """The served :class:`Blob` of ``filename`` at ``revision`` (for assertions)."""
        repo = self.repos[(repo_type, repo_id)]
        return repo.commits[repo.commit(revision)][filename]

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LoopbackHub:
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def _server(self, route) -> ThreadingHTTPServer:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep pytest output clean
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's name
                hub._log(self)
                route(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                hub._log(self)
                route(self, head=False)

            def do_POST(self) -> None:  # noqa: N802
                hub._log(self)
                length = int(self.headers.get("Content-Length") or 0)
                self.body = self.rfile.read(length)
                route(self, head=False)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        return server

    def _log(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append((handler.command, handler.path, dict(handler.headers.items())))

    # ---- answers ---------------------------------------------------------------------------
    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        head: bool = False,
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
        with self._lock:
            self.responses.append((status, handler.path, 0 if head else len(body)))

    def _json(self, handler, value, *, head: bool = False) -> None:
        body = json.dumps(value).encode()
        self._send(handler, 200, {"Content-Type": "application/json"}, body, head=head)

    def _error(self, handler, status: int, code: str, message: str, head: bool, **extra) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, **extra}
        headers["Content-Type"] = "application/json"
        self._send(handler, status, headers, json.dumps({"error": message}).encode(), head=head)

    def _repo_or_error(self, handler, repo_type: str, repo_id: str, head: bool) -> Repo | None:
        """The repo, or None after answering as the Hub does: unknown (401 RepoNotFound) or
        gated without an accepted token (401 without a token, 403 with another)."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            message = "Repository not found"
            self._error(handler, 401, "RepoNotFound", message, head)
            return None
        return repo

    def _gate(self, handler, repo: Repo, head: bool) -> bool:
        """True when the request may read the repo's files; else answers 401/403 GatedRepo."""
        if not repo.gated:
            return True
        auth = handler.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if token and token in self.tokens:
            return True
        kind = "model" if repo.repo_type == "model" else "dataset"
        if token:
            message = (
                f"Access to {kind} {repo.repo_id} is restricted and you are not in the "
                "authorized list. Visit the repo page to ask for access."
            )
            self._error(handler, 403, "GatedRepo", message, head)
        else:
            message = (
                f"Access to {kind} {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in."
            )
            self._error(handler, 401, "GatedRepo", message, head)
        return False

    def _hub(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        api = _API.match(url.path)
        if api is not None:
            repo_type = api[1][:-1]
            repo = self._repo_or_error(handler, repo_type, unquote(api["id"]), head)
            if repo is not None:
                self._api(handler, repo, unquote(api["rest"] or ""), parse_qs(url.query), head)
            return
        resolve = _RESOLVE.match(url.path)
        if resolve is None:
            self._error(handler, 404, "NotFound", f"no route for {path}", head)
            return
        repo_type = "dataset" if resolve["type"] else "model"
        repo = self._repo_or_error(handler, repo_type, unquote(resolve["id"]), head)
        if repo is None or not self._gate(handler, repo, head):
            return
        revision, _, filename = resolve["rest"].partition("/")
        self._resolve(handler, repo, unquote(revision), unquote(filename), head)

    def _revision(self, handler, repo: Repo, revision: str, head: bool) -> str | None:
        sha = repo.commit(revision)
        if sha is None:
            message = f"Invalid rev id: {revision}"
            self._error(handler, 404, "RevisionNotFound", message, head)
        return sha

    def _api(self, handler, repo: Repo, rest: str, query: dict, head: bool) -> None:
        """``/api/{type}s/{id}``, ``.../revision/{rev}``, ``.../tree/{rev}[/path]``,
        ``.../paths-info/{rev}``."""
        kind, _, tail = rest.lstrip("/").partition("/")
        if kind in ("", "revision"):
            sha = self._revision(handler, repo, tail or "main", head)
            if sha is not None:
                self._json(handler, self._info(repo, sha), head=head)
            return
        if kind not in ("tree", "paths-info"):
            self._error(handler, 404, "NotFound", f"no API route {rest}", head)
            return
        revision, _, inside = tail.partition("/")  # the file list of a gated repo is public
        sha = self._revision(handler, repo, revision, head)
        if sha is None:
            return
        blobs = repo.commits[sha]
        if kind == "paths-info":
            wanted = parse_qs(getattr(handler, "body", b"").decode()).get("paths", [])
            entries = [e for e in self._tree(blobs, "", True) if e["path"] in wanted]
            self._json(handler, entries, head=head)
            return
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries = self._tree(blobs, inside.strip("/"), recursive)
        if inside and not entries:
            message = f"{inside} does not exist on {revision}"
            self._error(handler, 404, "EntryNotFound", message, head, **{"X-Repo-Commit": sha})
            return
        self._json(handler, entries, head=head)

    @staticmethod
    def _info(repo: Repo, sha: str) -> dict:
        return {
            "id": repo.repo_id,
            "sha": sha,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "siblings": [{"rfilename": name} for name in sorted(repo.commits[sha])],
            "tags": [],
        }

    @staticmethod
    def _tree(blobs: dict[str, Blob], inside: str, recursive: bool) -> list[dict]:
        """Tree entries under folder ``inside``: files and folders, as the Hub lists them."""
        prefix = f"{inside}/" if inside else ""
        files, folders = [], set()
        for name, blob in sorted(blobs.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                if depth == 1 or recursive:
                    folders.add(prefix + "/".join(parts[:depth]))
            if len(parts) == 1 or recursive:
                entry = {"type": "file", "oid": blob.git_oid, "size": blob.size, "path": name}
                if blob.lfs:
                    entry["lfs"] = {
                        "oid": blob.sha256,
                        "size": blob.size,
                        "pointerSize": POINTER_SIZE,
                    }
                files.append(entry)
        dirs = [
            {"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "path": d}
            for d in sorted(folders)
        ]
        return dirs + files

    def _resolve(self, handler, repo: Repo, revision: str, filename: str, head: bool) -> None:
        sha = self._revision(handler, repo, revision, head)
        if sha is None:
            return
        blob = repo.commits[sha].get(filename)
        if blob is None:
            message = "Entry not found"
            self._error(handler, 404, "EntryNotFound", message, head, **{"X-Repo-Commit": sha})
            return
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes"}
        if blob.lfs:  # the Hub answers LFS files with a redirect to its CDN
            prefix = "datasets/" if repo.repo_type == "dataset" else ""
            target = f"{self.cdn}/{prefix}{quote(repo.repo_id)}/{sha}/{quote(filename)}"
            headers |= {
                "ETag": f'"{blob.git_oid}"',
                "X-Linked-Etag": f'"{blob.sha256}"',
                "X-Linked-Size": str(blob.size),
                "Location": target,
            }
            self._send(handler, 302, headers, head=head)
            return
        headers["ETag"] = f'"{blob.git_oid}"'
        self._body(handler, repo.repo_id, filename, blob, headers, head)

    def _cdn(self, handler: BaseHTTPRequestHandler, *, head: bool) -> None:
        """The "CDN": ``/[datasets/]{id}/{sha}/{path}``, the redirect target of LFS files."""
        match = re.match(r"^/(?:(datasets)/)?([^/]+/[^/]+)/([0-9a-f]{40})/(.+)$", handler.path)
        repo = match and self.repos.get(("dataset" if match[1] else "model", unquote(match[2])))
        blob = repo and repo.commits.get(match[3], {}).get(unquote(match[4]))
        if not blob:
            self._send(handler, 404, {}, b"NoSuchKey", head=head)
            return
        headers = {"ETag": f'"{blob.sha256}"', "Accept-Ranges": "bytes"}
        self._body(handler, repo.repo_id, unquote(match[4]), blob, headers, head)

    def _take_interruption(self, repo_id: str, filename: str) -> Interruption | None:
        with self._lock:
            for cut in self.interruptions:
                if cut.repo_id == repo_id and cut.filename == filename and cut.times > 0:
                    cut.times -= 1
                    return cut
        return None

    def _body(self, handler, repo_id: str, filename: str, blob: Blob, headers, head) -> None:
        """The file's bytes: all (200) or the requested range (206); cut short when an
        interruption is armed for it."""
        data = blob.path.read_bytes()
        status, first, last = 200, 0, blob.size - 1
        wanted = None if self.ignore_range else _byte_range(handler.headers.get("Range"), blob.size)
        if wanted is not None:
            first, last = wanted
            if first >= blob.size:
                self._send(handler, 416, {"Content-Range": f"bytes */{blob.size}"}, head=head)
                return
            status = 206
            headers = {**headers, "Content-Range": f"bytes {first}-{last}/{blob.size}"}
        body = data[first : last + 1]
        cut = None if head else self._take_interruption(repo_id, filename)
        if cut is None or cut.after <= first:
            self._send(handler, status, headers, body, head=head)
            return
        sent = body[: cut.after - first]
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(sent)
        handler.wfile.flush()
        with self._lock:
            self.responses.append((status, handler.path, len(sent)))
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)  # the link goes down mid-file

    def ranges(self, filename: str) -> Iterator[str]:
        """The Range headers of the GETs whose path ends with ``filename``."""
        for method, path, headers in self.requests:
            wanted = headers.get("Range") or headers.get("range")
            if method == "GET" and wanted and unquote(urlsplit(path).path).endswith(filename):
                yield wanted


def write_hub_dataset(dataset, folder: Path, config_name: str | None = None) -> Path:
    """Save a ``datasets.DatasetDict`` in the file layout ``push_to_hub`` gives a Hub dataset
    repo (what the lmms-lab datasets hold): ``<config or data>/<split>-00000-of-00001.parquet``
    and a README whose YAML ``configs`` names each split's files; returns ``folder``."""
    import yaml

    folder = Path(folder)
    sub = config_name or "data"
    for split, rows in dataset.items():
        target = folder / sub / f"{split}-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(str(target))
    files = [{"split": split, "path": f"{sub}/{split}-*"} for split in dataset]
    card = {"configs": [{"config_name": config_name or "default", "data_files": files}]}
    (folder / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n")
    return folder


def publish_encoder_twins(
    hub: LoopbackHub, specs: dict, root: Path, *, gated: tuple[str, ...] = ("sd3",)
) -> dict[str, tuple[str, str]]:
    """A tiny twin (tests/helpers/hub_twins.py) of every distinct encoder repo of ``specs``, built
    under ``root/<encoder>`` and published under its real id; the families in ``gated`` are gated,
    as SD3-medium is on the Hub. Returns encoder name -> (repo id, commit)."""
    from helpers.hub_twins import write_twin

    published: dict[str, tuple[str, str]] = {}
    for name, spec in specs.items():
        if spec.family == "fusion" or not spec.model_id or spec.tiny is not None:
            continue
        if spec.model_id in {repo for repo, _ in published.values()}:
            continue
        write_twin(Path(root) / name, spec)
        sha = hub.publish(spec.model_id, Path(root) / name, gated=spec.family in gated)
        published[name] = (spec.model_id, sha)
    return published


def publish_benchmark_datasets(hub: LoopbackHub, tasks: list[str], root: Path) -> dict[str, dict]:
    """Each lmms-eval task's tiny dataset (tests/helpers/real_task_data.py: the exact columns the
    installed task reads) published under the dataset id and configuration the installed task
    names (vislaw.eval.task_data). Returns task -> {split: sorted columns + [row count]}."""
    from helpers.real_task_data import BUILDERS
    from vislaw.eval.task_data import task_data

    shapes = {}
    for task in tasks:
        data = task_data(task)
        built = BUILDERS[task]()
        shapes[task] = {s: sorted(rows.column_names) + [len(rows)] for s, rows in built.items()}
        folder = write_hub_dataset(built, Path(root) / task, data.dataset_name)
        hub.publish(data.dataset_path, folder, repo_type="dataset")
    return shapes

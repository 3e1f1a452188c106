"""Warm start for local runs: jobs fork from one process that has imported the heavy stack once.

Why: a demo job's real work is a fraction of a second to a few seconds, but every job is a fresh
Python that imports torch, transformers, diffusers or lmms-eval first (1.5 to 8 s each, measured
with ``python -X importtime``; docs/performance.md). On a laptop's two cores those imports were
most of the demo's wall time.

How: the Snakefile (``onstart``, local executor only) starts :func:`serve` in the background. The
server imports :data:`PRELOAD` and then listens on a Unix socket. Each job's script calls
:func:`delegate` first (``vislaw.jobs.job_log`` does): it sends its script path, working folder,
argv, environment and its stdin/stdout/stderr file descriptors; the server forks, the child takes
the job's descriptors, folder and environment and runs the same script, and the job's process
waits and exits with the child's status. Anything unusual (no server, another interpreter, an
environment variable that libraries read at import time differs) runs the job in its own
process as before; so does every job on a cluster.

Safety: the server is single-threaded (fork from a threaded process can deadlock), sets the
linear-algebra thread counts to 1 before importing (pools are sized at import), and the child
reseeds the RNGs a fresh interpreter seeds from the OS (jobs seed their own generators anyway).
A job killed by Snakemake closes its socket; the server then kills the forked child.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

SOCKET_VAR = "VISLAW_WARM_SOCKET"  # set for jobs while a server runs
CHILD_VAR = "VISLAW_WARM_CHILD"  # set inside a forked job: run it, do not delegate again

# What a job imports before its real work; a module missing here is skipped (an env without it).
PRELOAD = (
    "numpy",
    "h5py",
    "torch",
    "safetensors.torch",
    "transformers",
    "transformers.modeling_utils",
    "diffusers",
    "peft",
    "open_clip",
    "deepspeed",
    "accelerate",
    "lmms_eval.__main__",
    "lmms_eval.evaluator",
    "lmms_eval.tasks",
    "pandas",
    "scipy.stats",
    "sklearn.linear_model",
    "matplotlib.pyplot",
    "vislaw.config",
    "vislaw.pipeline",
)

# Read by libraries when they are imported (caches, offline switches, thread pools): a job whose
# value differs from the server's must not run in a child of the server.
IMPORT_TIME_VARS = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_DATASETS_CACHE",
    "TRANSFORMERS_OFFLINE",
    "TRANSFORMERS_CACHE",
    "TORCH_HOME",
    "XDG_CACHE_HOME",
    "PYTHONPATH",
    "CUDA_VISIBLE_DEVICES",
)
SINGLE_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_MAX_FDS = 3
_HEADER = struct.Struct("!I")


def _send(conn: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(conn, [payload], list(fds))
    else:
        conn.sendall(payload)


def _receive(conn: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One message and the descriptors sent with it; (None, []) when the peer has closed."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, _MAX_FDS)
    if not data:
        return None, fds
    (size,) = _HEADER.unpack_from(data)
    while len(data) < _HEADER.size + size:
        more = conn.recv(1 << 20)
        if not more:
            return None, fds
        data += more
    return json.loads(data[_HEADER.size : _HEADER.size + size]), fds


def fingerprint(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The import-time variables of an environment, with the interpreter that reads them."""
    return {"python": sys.executable, **{k: environ.get(k) for k in IMPORT_TIME_VARS}}


# -- the job's side ---------------------------------------------------------------------------


def delegate() -> None:
    """Run this job in a child of the warm server and exit with its status; return at once
    (the job then runs here, as without a server) when there is no usable server."""
    address = os.environ.get(SOCKET_VAR)
    if not address or os.environ.get(CHILD_VAR) or not Path(address).exists():
        return
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(address)
    except OSError:
        return  # the server is gone or not ready yet
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    request = {
        "script": str(Path(sys.argv[0]).resolve()),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "fingerprint": fingerprint(os.environ),
    }
    try:
        _send(conn, request, [0, 1, 2])
        answer, _ = _receive(conn)
        if not answer or not answer.get("accepted"):
            conn.close()
            return  # refused (another interpreter or environment): run here
        done, _ = _receive(conn)
    except (OSError, ValueError):
        conn.close()
        return
    code = int(done["status"]) if done else 1
    os._exit(code)


# -- the server's side ------------------------------------------------------------------------


def _run_child(request: Mapping[str, Any], fds: Sequence[int], listener: socket.socket) -> None:
    """In the forked child: become the job (descriptors, folder, environment, argv) and run its
    script; never returns."""
    code = 1
    try:
        listener.close()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's handler is not the job's
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the job's own descriptors
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD_VAR] = "1"
        sys.argv = list(request["argv"])
        _reseed()
        import runpy

        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001 - the job's failure, reported as Python would
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reseed() -> None:
    """The RNG state a fresh interpreter would have: OS entropy for random and numpy's legacy
    generator, torch's documented initial seed for its default generator."""
    import random

    random.seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.manual_seed(torch.initial_seed())


def _preload(modules: Sequence[str]) -> list[str]:
    """Import what jobs import; the names that failed (left to the jobs to import or not).
    Then parse the config schema, which every job checks its config against (cached)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - an optional stack missing from this env
            failed.append(name)
    from vislaw.config import schema

    schema()
    return failed


class _Server:
    """The accept/fork/reap loop; single-threaded on purpose (see the module docstring)."""

    def __init__(self, address: str, parent: int) -> None:
        self.address = address
        self.parent = parent
        self.environ = fingerprint(os.environ)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = f"{address}.tmp-{os.getpid()}"
        self.listener.bind(tmp)
        os.replace(tmp, address)  # jobs see the socket only once it accepts
        self.listener.listen(64)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.children: dict[int, socket.socket] = {}  # pid -> the waiting job's connection

    def serve(self) -> None:
        try:
            while self._parent_alive():
                for key, _ in self.selector.select(timeout=0.05):
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._hang_up(key.fileobj)  # a waiting job closed: kill its child
                self._reap()
        finally:
            for pid in list(self.children):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            Path(self.address).unlink(missing_ok=True)

    def _parent_alive(self) -> bool:
        return os.getppid() == self.parent

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            request, fds = _receive(conn)
        except (OSError, ValueError):
            conn.close()
            return
        if request is None or len(fds) != _MAX_FDS or request["fingerprint"] != self.environ:
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                _send(conn, {"accepted": False})
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            _run_child(request, fds, self.listener)
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        self.selector.register(conn, selectors.EVENT_READ)
        _send(conn, {"accepted": True, "pid": pid})

    def _hang_up(self, conn: Any) -> None:
        with contextlib.suppress(OSError):
            if conn.recv(1):
                return
        for pid, waiting in list(self.children.items()):
            if waiting is conn:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            self.selector.unregister(conn)
            with contextlib.suppress(OSError):
                _send(conn, {"status": os.waitstatus_to_exitcode(status) % 256})
            conn.close()


def serve(address: str, parent: int, modules: Sequence[str] = PRELOAD) -> None:
    """Preload ``modules``, then run jobs until process ``parent`` (Snakemake) is gone."""
    for var in SINGLE_THREAD_VARS:
        os.environ[var] = "1"
    failed = _preload(modules)
    if failed:
        print(f"[vislaw warm] not preloaded (jobs import them): {failed}", file=sys.stderr)
    _Server(address, parent).serve()


# -- the workflow's side ----------------------------------------------------------------------


def start(
    parent: int | None = None,
    modules: Sequence[str] = PRELOAD,
    log: str | Path | None = None,
) -> subprocess.Popen:
    """Start a server for this process's jobs and point them at it (``SOCKET_VAR``); its own
    output (library warnings while preloading) goes to ``log`` when given."""
    parent = os.getpid() if parent is None else parent
    address = str(Path(tempfile.gettempdir()) / f"vislaw-warm-{parent}.sock")
    Path(address).unlink(missing_ok=True)
    command = [sys.executable, "-m", "vislaw.warm", "--socket", address, "--parent", str(parent)]
    command += ["--preload", ",".join(modules)]
    output = None
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        output = open(log, "w")  # noqa: SIM115 - handed to the server process
    try:
        process = subprocess.Popen(  # noqa: S603 - our own module
            command, start_new_session=True, stdout=output, stderr=output
        )
    finally:
        if output is not None:
            output.close()
    os.environ[SOCKET_VAR] = address
    return process


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start` (jobs are all done: Snakemake's onsuccess/onerror)."""
    os.environ.pop(SOCKET_VAR, None)
    if process is None or process.poll() is not None:
        return
    process.terminate()
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.warm",
        description="Warm-start server for local Snakemake runs (started by the Snakefile when "
        "the config says warm_start: true; see docs/performance.md).",
    )
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="comma-separated modules")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(args.socket, args.parent, [m for m in args.preload.split(",") if m])


if __name__ == "__main__":
    main()

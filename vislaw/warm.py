"""Warm start for local runs: jobs fork from one process that has imported the heavy stack once.

Why: a demo job's real work is a fraction of a second to a few seconds, but every job is a fresh
Python that imports torch, transformers, diffusers or lmms-eval first (1.5 to 8 s each, measured
with ``python -X importtime``; docs/performance.md). On a laptop's two cores those imports were
most of the demo's wall time.

How: the Snakefile (``onstart``, local executor only) starts :func:`serve` in the background. The
server imports :data:`PRELOAD` and then listens on a Unix socket. Each job's script calls
:func:`delegate` first (``vislaw.jobs.job_log`` does, when the job's config says
``warm_start: true``): it sends its script path, working folder, argv, environment and its
stdin/stdout/stderr file descriptors; the server forks, the child takes the job's descriptors,
folder and environment and runs the same script, and the job's process waits and exits with the
child's status. Anything unusual (no server, a stale socket, another interpreter, an environment
variable that libraries read at import time differs, a job that may use CUDA) runs the job in its
own process as before; so does every job on a cluster.

Safety on a shared machine (issue 23): running a job is running code as this user, so only this
user's jobs of this run get in. The socket lives in a private folder (``tempfile.mkdtemp``: mode
0700, unpredictable name) that the workflow creates before it exports the path; the server
checks each peer's uid (``SO_PEERCRED``) and then a per-run secret (:data:`TOKEN_VAR`, from the
environment, never on a command line) before it reads anything else; a job checks that the
folder is its own and private and that the server runs as its uid before it sends its
environment. Every request must arrive whole within ``receive_seconds`` and is read without
blocking, so an idle or slow connection delays nobody. The server is single-threaded (fork from
a threaded process can deadlock), sets the linear-algebra thread counts to 1 before importing
(pools are sized at import) and never imports DeepSpeed (it probes accelerators when imported);
before each fork it checks that CUDA is untouched (a CUDA context does not survive a fork).
Each child starts its own session, closes the server's other connections, applies the job's
thread counts and TMPDIR, reseeds the RNGs a fresh interpreter seeds from the OS, and reports
its exit status to the job itself, so a job that finished is not failed by a server that died.
A job killed by Snakemake closes its socket; the server then kills the child's process group.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hmac
import importlib
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

SOCKET_VAR = "VISLAW_WARM_SOCKET"  # set for jobs while a server runs
TOKEN_VAR = "VISLAW_WARM_TOKEN"  # the run's secret, set for jobs and for the server
CHILD_VAR = "VISLAW_WARM_CHILD"  # set inside a forked job: run it, do not delegate again

# What a job imports before its real work; a module missing here is skipped (an env without it).
# Not DeepSpeed: importing it probes the accelerators (CUDA), which must not happen before a fork.
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
    "threadpoolctl",  # each child sizes the thread pools with it (_apply_job_environment)
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
# Thread pools sized from these: 1 in the server, the job's own values applied in each child.
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# Present where a GPU driver is installed: a job on `device: auto` may then use CUDA.
GPU_DRIVER_PATHS = ("/dev/nvidiactl", "/proc/driver/nvidia", "/dev/kfd", "/dev/dxg")
RECEIVE_SECONDS = 10.0  # a request must arrive whole within this many seconds of connecting
ANSWER_SECONDS = 60.0  # a job waits this long for the server to take or refuse it
KILL_GRACE_SECONDS = 10.0  # SIGTERM to a dead job's child, then SIGKILL to its group
_MAX_FDS = 3
_MAX_MESSAGE = 8 << 20
_HEADER = struct.Struct("!I")
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def _send(conn: socket.socket, message: Mapping[str, Any], fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        sent = socket.send_fds(conn, [payload], list(fds))
        if sent < len(payload):
            conn.sendall(payload[sent:])
    else:
        conn.sendall(payload)


def _take_message(buffer: bytearray) -> dict[str, Any] | None:
    """The first whole message in ``buffer`` (removed from it), None while it is incomplete.
    ValueError for a message that is too long or not a JSON object."""
    if len(buffer) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(buffer)
    if size > _MAX_MESSAGE:
        raise ValueError(f"message of {size} bytes (limit {_MAX_MESSAGE})")
    if len(buffer) < _HEADER.size + size:
        return None
    message = json.loads(bytes(buffer[_HEADER.size : _HEADER.size + size]))
    del buffer[: _HEADER.size + size]
    if not isinstance(message, dict):
        raise ValueError("message is not a JSON object")
    return message


def _receive(conn: socket.socket, buffer: bytearray) -> dict[str, Any] | None:
    """The next message on a blocking connection (its timeout applies to every read); None
    when the peer closed first. Bytes after the message stay in ``buffer`` for the next call."""
    while (message := _take_message(buffer)) is None:
        more = conn.recv(1 << 16)
        if not more:
            return None
        buffer += more
    return message


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (SO_PEERCRED: the kernel's
    word, which the peer cannot forge)."""
    _, uid, _ = _CRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))
    return uid


def fingerprint(environ: Mapping[str, str]) -> dict[str, str | None]:
    """The import-time variables of an environment, with the interpreter that reads them."""
    return {"python": sys.executable, **{k: environ.get(k) for k in IMPORT_TIME_VARS}}


# -- the job's side ---------------------------------------------------------------------------


def may_use_cuda(device: str | None, gpus: int) -> bool:
    """Whether a job may initialise CUDA: it asks for GPUs or ``device: cuda``, or it leaves the
    device to ``auto`` (the schema's default, also when the key is absent) on a machine with a
    GPU driver. Such a job runs in its own process: a CUDA context does not survive a fork."""
    if gpus > 0 or device == "cuda":
        return True
    return device != "cpu" and any(Path(p).exists() for p in GPU_DRIVER_PATHS)


def _private_folder(address: str) -> bool:
    """The socket's folder is this user's and nobody else may enter or write it (mode 0700, as
    tempfile.mkdtemp makes it): no other user can have bound or replaced the socket."""
    try:
        info = Path(address).parent.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def _connect(address: str) -> socket.socket | None:
    """A connection to this user's server at ``address``; None (the job runs itself) when the
    folder is not private, nothing listens (a killed server's stale socket) or the peer is
    another user's process."""
    if not _private_folder(address):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(ANSWER_SECONDS)
    try:
        conn.connect(address)
        if peer_uid(conn) == os.getuid():
            return conn
    except OSError:
        pass
    conn.close()
    return None


def delegate(device: str | None, gpus: int = 0) -> None:
    """Run this job in a child of the warm server and exit with its status; return at once
    (the job then runs here, as without a server) when there is no usable server or the job
    may use CUDA. The caller decides that the config turns warm start on (vislaw.jobs)."""
    address, token = os.environ.get(SOCKET_VAR), os.environ.get(TOKEN_VAR)
    if not address or not token or os.environ.get(CHILD_VAR) or may_use_cuda(device, gpus):
        return
    conn = _connect(address)
    if conn is None:
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    request = {
        "token": token,
        "script": str(Path(sys.argv[0]).resolve()),
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "fingerprint": fingerprint(os.environ),
    }
    buffer = bytearray()
    try:
        _send(conn, request, [0, 1, 2])
        answer = _receive(conn, buffer)
    except (OSError, ValueError):
        answer = None  # no answer in time: the server kills any child it forked for us
    if not answer or not answer.get("accepted"):
        conn.close()
        return  # refused (another interpreter or environment, CUDA touched): run here
    conn.settimeout(None)  # the job itself may run for hours
    try:  # from the child, or from the server when the child died without a word
        done = _receive(conn, buffer)
    except (OSError, ValueError):
        done = None
    status = done.get("status") if done else None
    os._exit(status % 256 if isinstance(status, int) else 1)  # it ran: never run it again here


# -- the server's side ------------------------------------------------------------------------


def cuda_touched() -> str | None:
    """Why this process must not fork a job (CUDA is initialised in it, and a CUDA context does
    not survive a fork), None when it may. Checked before every fork."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        return "torch has initialised CUDA in the server"
    with contextlib.suppress(OSError):
        if "libcuda.so" in Path("/proc/self/maps").read_text():
            return "the CUDA driver (libcuda) is loaded in the server"
    return None


def _count(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() and int(value) > 0 else None


def _apply_job_environment() -> None:
    """In the child, with the job's environment in place: what a fresh interpreter would take
    from it but this process read before the fork, the temporary folder (tempfile caches it)
    and the sizes of the thread pools (made at import, with the server's counts of 1)."""
    tempfile.tempdir = None
    counts = {var: _count(os.environ.get(var)) for var in THREAD_VARS}
    omp = counts["OMP_NUM_THREADS"]
    if omp and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(omp)
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return
    cores = os.cpu_count() or 1
    pools = ThreadpoolController()
    for api, count in (  # each library's own variable first, then OMP's, then all cores
        ("openblas", counts["OPENBLAS_NUM_THREADS"] or omp or cores),
        ("mkl", counts["MKL_NUM_THREADS"] or omp or cores),
        ("openmp", omp or cores),
    ):
        pools.select(internal_api=api).limit(limits=count)


def _run_child(request: Mapping[str, Any], fds: Sequence[int], conn: socket.socket) -> NoReturn:
    """In the forked child: become the job (descriptors, folder, environment, argv), run its
    script and report its exit status to the job itself; never returns."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the server's handlers are not the job's
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
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
        _apply_job_environment()
        sys.argv = list(request["argv"])
        _reseed()
        import runpy

        runpy.run_path(request["script"], run_name="__main__")
        code = 0
    except SystemExit as stop:
        if isinstance(stop.code, int) or stop.code is None:
            code = stop.code or 0
        else:  # sys.exit("message"): printed, status 1, as Python does
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - the job's failure, reported as Python would
        traceback.print_exc()
        code = 1
    finally:
        code &= 0xFF
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        with contextlib.suppress(Exception):  # outputs are written: the job may exit now
            conn.settimeout(5.0)
            _send(conn, {"status": code})
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


def _listen(address: str) -> socket.socket:
    """A listening socket at ``address``, readable by this user only, that appears under its
    name only once it accepts (a job that finds it earlier would run itself)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{address}.tmp"
    Path(staging).unlink(missing_ok=True)
    listener.bind(staging)
    os.chmod(staging, 0o600)
    listener.listen(64)
    os.replace(staging, address)
    return listener


def _remove_socket(address: str, owner: int) -> None:
    """Remove the socket and, when empty, its private folder; only in the server itself (a
    forked child inherits this function through atexit but leaves with os._exit)."""
    if os.getpid() != owner:
        return
    for path in (address, f"{address}.tmp"):
        Path(path).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(address).parent.rmdir()


def _kill_group(pid: int, sig: int) -> None:
    """Signal a child's process group (the job and whatever it started), and the child itself
    in case it has not yet made its own group."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, sig)


def _close_fds(fds: Sequence[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _log(message: str) -> None:
    print(f"[vislaw warm] {message}", file=sys.stderr, flush=True)


@dataclass
class _Pending:
    """A connection whose request is still arriving, with the descriptors received so far."""

    conn: socket.socket
    deadline: float
    buffer: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)


@dataclass
class _Running:
    """The connection of a job whose child runs, and when to SIGKILL it after a hang-up."""

    conn: socket.socket
    kill_at: float | None = None


class _Server:
    """The accept/read/fork/reap loop; single-threaded on purpose (see the module docstring),
    so nothing in it blocks: requests are read as they arrive, each under its own deadline."""

    def __init__(self, address: str, parent: int, token: str, receive_seconds: float) -> None:
        self.address = address
        self.parent = parent
        self.owner = os.getpid()
        self.token = token.encode()
        self.receive_seconds = receive_seconds
        self.environ = fingerprint(os.environ)
        self.listener = _listen(address)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.running: dict[int, _Running] = {}  # child pid -> its job's connection

    def serve(self) -> None:
        try:
            while os.getppid() == self.parent:
                self._reap()
                for key, _ in self.selector.select(timeout=0.05):
                    if key.fileobj is self.listener:
                        self._accept()
                    elif isinstance(key.data, _Pending):
                        self._read(key.data)
                    else:
                        self._hang_up(key.data)  # a waiting job closed: kill its child
                self._expire()
        finally:
            for pid in self.running:
                _kill_group(pid, signal.SIGTERM)
            self.selector.close()
            self.listener.close()
            _remove_socket(self.address, self.owner)

    def _accept(self) -> None:
        """Take a connection from this user only (SO_PEERCRED), then read it as it arrives."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            uid = peer_uid(conn)
        except OSError:
            uid = -1  # unknown: refused like another user's
        if uid != os.getuid():
            _log(f"refused a connection from uid {uid} (this server runs as {os.getuid()})")
            conn.close()
            return
        conn.setblocking(False)
        pending = _Pending(conn, time.monotonic() + self.receive_seconds)
        self.selector.register(conn, selectors.EVENT_READ, pending)

    def _read(self, pending: _Pending) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(pending.conn, 1 << 16, _MAX_FDS)
        except BlockingIOError:
            return
        except OSError:
            data, fds = b"", []
        pending.fds += fds
        pending.buffer += data
        try:
            request = _take_message(pending.buffer)
        except ValueError as error:
            self._drop(pending, f"unreadable request ({error})")
            return
        if request is None:
            if not data:
                self._drop(pending, "closed before its request was whole")
            return
        self.selector.unregister(pending.conn)
        self._start(pending, request)

    def _refusal(self, request: Mapping[str, Any], fds: Sequence[int]) -> str | None:
        """Why this request must not run here (None: it may); the secret is checked first."""
        token = request.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.token):
            return "wrong or missing secret"
        if len(fds) != _MAX_FDS:
            return f"{len(fds)} descriptors instead of {_MAX_FDS}"
        if request.get("fingerprint") != self.environ:
            return "another interpreter or import-time environment"
        return cuda_touched()

    def _start(self, pending: _Pending, request: Mapping[str, Any]) -> None:
        """Fork the job's child, or tell the job to run itself. "accepted" goes out before the
        fork: the child's own status message must come after it."""
        conn = pending.conn
        conn.settimeout(1.0)
        reason = self._refusal(request, pending.fds)
        if reason is not None:
            if reason.startswith("wrong"):
                _log(f"refused a request: {reason}")
            with contextlib.suppress(OSError):
                _send(conn, {"accepted": False, "reason": reason})
            _close_fds(pending.fds)
            conn.close()
            return
        try:
            _send(conn, {"accepted": True})
        except OSError:
            _close_fds(pending.fds)
            conn.close()
            return
        pid = os.fork()
        if pid == 0:  # never back into the server's loop, whatever is raised (a SIGTERM)
            try:
                os.setsid()  # its own session and process group, killed as one
                self._close_others(conn)
                _run_child(request, pending.fds, conn)
            finally:
                os._exit(1)
        _close_fds(pending.fds)
        self.running[pid] = _Running(conn)
        self.selector.register(conn, selectors.EVENT_READ, pid)

    def _close_others(self, keep: socket.socket) -> None:
        """In a child: close the listener and every other job's connection and descriptors."""
        for key in list(self.selector.get_map().values()):
            if isinstance(key.data, _Pending):
                _close_fds(key.data.fds)
            if key.fileobj is not keep:
                key.fileobj.close()
        for job in self.running.values():
            if job.conn is not keep:
                job.conn.close()
        self.selector.close()

    def _drop(self, pending: _Pending, reason: str) -> None:
        _log(f"dropped a connection: {reason}")
        self.selector.unregister(pending.conn)
        _close_fds(pending.fds)
        pending.conn.close()

    def _expire(self) -> None:
        now = time.monotonic()
        for key in list(self.selector.get_map().values()):
            if isinstance(key.data, _Pending) and now > key.data.deadline:
                self._drop(key.data, f"no whole request within {self.receive_seconds:g} s")

    def _hang_up(self, pid: int) -> None:
        job = self.running.get(pid)
        if job is None:
            return
        with contextlib.suppress(OSError):
            if job.conn.recv(1):
                return
        self.selector.unregister(job.conn)
        _kill_group(pid, signal.SIGTERM)
        job.kill_at = time.monotonic() + KILL_GRACE_SECONDS

    def _reap(self) -> None:
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            job = self.running.pop(pid, None)
            if job is None:
                continue
            if job.kill_at is None:  # still registered: the job has not hung up
                self.selector.unregister(job.conn)
            with contextlib.suppress(OSError):  # the child has usually said it already
                _send(job.conn, {"status": os.waitstatus_to_exitcode(status) % 256})
            job.conn.close()
        now = time.monotonic()
        for pid, job in self.running.items():
            if job.kill_at is not None and now >= job.kill_at:
                _kill_group(pid, signal.SIGKILL)
                job.kill_at = now + KILL_GRACE_SECONDS


def serve(
    address: str,
    parent: int,
    modules: Sequence[str] = PRELOAD,
    receive_seconds: float = RECEIVE_SECONDS,
) -> None:
    """Preload ``modules``, then run jobs until process ``parent`` (Snakemake) is gone. The
    run's secret is read from (and removed from) this process's environment."""
    token = os.environ.pop(TOKEN_VAR, "")
    if not token:
        raise SystemExit(f"[vislaw warm] no secret in {TOKEN_VAR}: not serving")
    atexit.register(_remove_socket, address, os.getpid())
    for var in THREAD_VARS:
        os.environ[var] = "1"
    failed = _preload(modules)
    if failed:
        _log(f"not preloaded (jobs import them): {failed}")
    _Server(address, parent, token, receive_seconds).serve()


# -- the workflow's side ----------------------------------------------------------------------


def start(
    parent: int | None = None,
    modules: Sequence[str] = PRELOAD,
    log: str | Path | None = None,
    receive_seconds: float = RECEIVE_SECONDS,
) -> subprocess.Popen:
    """Start a server for this process's jobs and point them at it (``SOCKET_VAR`` and the
    secret ``TOKEN_VAR``); its own output (library warnings while preloading) goes to ``log``
    when given. The socket's folder is private and made here, before the path is exported, so
    no other user can take the name first."""
    parent = os.getpid() if parent is None else parent
    address = str(Path(tempfile.mkdtemp(prefix="vislaw-warm-")) / "server.sock")
    token = secrets.token_hex(32)
    command = [sys.executable, "-m", "vislaw.warm", "--socket", address, "--parent", str(parent)]
    command += ["--preload", ",".join(modules), "--receive-seconds", str(receive_seconds)]
    output = None
    if log is not None:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        output = open(log, "w")  # noqa: SIM115 - handed to the server process
    try:
        process = subprocess.Popen(  # noqa: S603 - our own module
            command,
            start_new_session=True,
            stdout=output,
            stderr=output,
            env={**os.environ, TOKEN_VAR: token},  # not on the command line: ps shows that
        )
    finally:
        if output is not None:
            output.close()
    os.environ[SOCKET_VAR] = address
    os.environ[TOKEN_VAR] = token
    return process


def stop(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """Stop a server started by :func:`start` (jobs are all done: Snakemake's onsuccess/onerror)
    and remove its folder, also when the server was killed and could not."""
    os.environ.pop(SOCKET_VAR, None)
    os.environ.pop(TOKEN_VAR, None)
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()
    args = list(process.args)
    if "--socket" in args:
        shutil.rmtree(Path(args[args.index("--socket") + 1]).parent, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.warm",
        description="Warm-start server for local Snakemake runs (started by the Snakefile when "
        f"the config says warm_start: true; see docs/performance.md). Reads the run's secret "
        f"from {TOKEN_VAR}.",
    )
    parser.add_argument("--socket", required=True, help="Unix socket path to listen on")
    parser.add_argument("--parent", type=int, required=True, help="exit when this pid is gone")
    parser.add_argument("--preload", default=",".join(PRELOAD), help="comma-separated modules")
    parser.add_argument(
        "--receive-seconds",
        type=float,
        default=RECEIVE_SECONDS,
        help="drop a connection whose request is not whole within this many seconds",
    )
    args = parser.parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):  # leave through the clean-up
        signal.signal(sig, lambda *_: sys.exit(0))
    modules = [m for m in args.preload.split(",") if m]
    serve(args.socket, args.parent, modules, args.receive_seconds)


if __name__ == "__main__":
    main()

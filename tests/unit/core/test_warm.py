"""Warm start (vislaw.warm): a job's script runs in a fork of a server that imported modules
once; its output, exit status, folder and environment are the job's; a job the server must
not run (other interpreter or import-time environment, CUDA), or one without a server, runs
itself; a job killed while waiting takes its forked child's process group with it.

And the attacks of issue 23 on a shared machine: another uid, a client without the run's
secret, an idle connection, a squatted socket path, a variable left set for a run that did not
turn warm start on, a killed server. Tests that need a second uid fork and ``setuid(65534)``;
they are skipped where the tests do not run as root."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.paths import ROOT
from vislaw import warm

SOCKET = "VISLAW_WARM_SOCKET"  # warm.SOCKET_VAR
TOKEN = "VISLAW_WARM_TOKEN"  # warm.TOKEN_VAR
NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="a second uid needs root (setuid); CI runs these as root"
)

# Modules the servers below preload, besides `decimal` (which no job imports itself, so a job
# that sees it ran in a fork): one that resolves the temporary folder when imported, as a
# library may, and one that leaves torch's CUDA initialised (this machine has no GPU to do it
# for real; the flag is torch's own, read by torch.cuda.is_initialized()).
PROBES = {
    "warm_tmp_probe.py": "import tempfile\n\ntempfile.gettempdir()\n",
    "warm_cuda_probe.py": "import torch\n\ntorch.cuda._initialized = True\n",
}

# The job: hands itself over through vislaw.jobs.job_log with the config Snakemake's script
# directive would give it (a `snakemake` global), then reports where and how it ran.
JOB = textwrap.dedent(
    """
    import json, os, subprocess, sys, tempfile, time, types
    from pathlib import Path

    snakemake = types.SimpleNamespace(
        config=json.loads(os.environ.get("JOB_CONFIG", '{"warm_start": true, "device": "cpu"}')),
        resources={"gpu": int(os.environ.get("JOB_GPUS", "0"))},
    )
    from vislaw.jobs import job_log

    with job_log(None):
        print("preloaded", "decimal" in sys.modules, flush=True)
        print("warm-child", os.environ.get("VISLAW_WARM_CHILD"), flush=True)
        print("argv", sys.argv[1:], flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        if os.environ.get("JOB_THREADS"):
            from threadpoolctl import threadpool_info

            blas = sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})
            print("blas", blas, flush=True)
            print("tmpdir", tempfile.gettempdir(), flush=True)
        if os.environ.get("JOB_GRANDCHILD"):
            grandchild = subprocess.Popen(["sleep", "300"])
            Path("grandchild.txt").write_text(str(grandchild.pid))
        Path("pid.txt").write_text(str(os.getpid()))
        Path("marker.txt").write_text(os.environ.get("JOB_MARKER", "unset"))
        time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
        sys.exit(int(os.environ.get("JOB_EXIT", "0")))
    """
)


@dataclass
class Server:
    process: subprocess.Popen
    env: dict[str, str]  # what the workflow exports for its jobs: socket path, secret, path

    @property
    def address(self) -> str:
        return self.env[SOCKET]


def _start(folder: Path, modules: list[str], umask: int | None = None) -> Server:
    """A server as rules/warm.smk starts one; jobs given ``Server.env`` match its PYTHONPATH."""
    saved = dict(os.environ)
    old_umask = os.umask(umask) if umask is not None else None
    try:
        os.environ["PYTHONPATH"] = _pythonpath(folder)  # an import-time variable: jobs match
        process = warm.start(modules=modules, log=folder / "server.log", receive_seconds=3)
        env = {k: os.environ[k] for k in (SOCKET, TOKEN, "PYTHONPATH") if k in os.environ}
    finally:
        if old_umask is not None:
            os.umask(old_umask)
        os.environ.clear()
        os.environ.update(saved)
    deadline = time.monotonic() + 120
    while not Path(env[SOCKET]).exists():
        assert process.poll() is None, (folder / "server.log").read_text()
        assert time.monotonic() < deadline, "the server did not start listening"
        time.sleep(0.05)
    return Server(process, env)


def _pythonpath(folder: Path) -> str:
    probes = folder / "probes"
    probes.mkdir(parents=True, exist_ok=True)
    for name, text in PROBES.items():
        (probes / name).write_text(text)
    return f"{ROOT}{os.pathsep}{probes}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = _start(tmp_path_factory.mktemp("warm"), ["decimal", "numpy", "warm_tmp_probe"])
    yield started
    warm.stop(started.process)
    assert not Path(started.address).parent.exists(), "the server left its folder behind"


def _job(
    folder: Path, server: Server | None, env: dict[str, str], *args: str, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "job.py"
    script.write_text(JOB)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(server.env if server else {}), **env}
    command = [sys.executable, str(script), *args]
    if not wait:
        return subprocess.Popen(command, cwd=folder, env=full_env)
    return subprocess.run(
        command, cwd=folder, env=full_env, capture_output=True, text=True, timeout=60
    )


def _wait_for(path: Path, seconds: float = 60) -> str:
    deadline = time.monotonic() + seconds
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    return path.read_text()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except OSError:
        return False


def _gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _request(server: Server, folder: Path, token: str | None) -> dict:
    """A request as a job sends it, for ``folder``'s job script, with ``token`` as its secret."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.py").write_text(JOB)
    env = {**os.environ, **server.env}
    env.pop(TOKEN, None)
    request = {
        "script": str(folder / "job.py"),
        "argv": [str(folder / "job.py")],
        "cwd": str(folder),
        "env": env,
        "fingerprint": warm.fingerprint(env),
    }
    if token is not None:
        request["token"] = token
    return request


def _send_request(address: str, request: dict, messages: int = 1) -> str:
    """Connect, send ``request`` with this process's stdio, and say what came back (up to
    ``messages`` messages, the connection open until then: closing it kills the job)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(20)
    conn.connect(address)
    warm._send(conn, request, [0, 1, 2])
    data, answers = b"", []
    while len(answers) < messages:
        more = conn.recv(1 << 16)
        if not more:
            break
        data += more
        while len(data) > 4 and len(data) >= 4 + (size := int.from_bytes(data[:4], "big")):
            answers.append(json.dumps(json.loads(data[4 : 4 + size])))
            data = data[4 + size :]
    conn.close()
    return " ".join(answers) or "closed"


def _as_nobody(action: Callable[[], str], seconds: float = 60) -> str:
    """Run ``action`` in a forked child that has become uid/gid 65534; what it returned, or
    the error it raised, as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            result = action()
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            result = f"error {type(error).__name__}: {error}"
        os.write(write_end, result.encode())
        os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], seconds)
    result = os.read(read_end, 1 << 16).decode() if ready else "timed out"
    os.close(read_end)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return result


# -- what a job gets ---------------------------------------------------------------------------


def test_a_job_runs_in_a_warm_child_with_its_own_io_folder_and_env(server, tmp_path):
    done = _job(tmp_path / "a", server, {"JOB_MARKER": "m1", "JOB_EXIT": "3"}, "--x", "1")
    assert done.returncode == 3, done.stderr
    assert "preloaded True" in done.stdout  # the server's import, inherited by the fork
    assert "warm-child 1" in done.stdout
    assert "argv ['--x', '1']" in done.stdout
    assert "to stderr" in done.stderr
    assert (tmp_path / "a" / "marker.txt").read_text() == "m1"  # its env, its folder


def test_each_job_is_a_fresh_fork(server, tmp_path):
    first = _job(tmp_path / "b", server, {})
    second = _job(tmp_path / "c", server, {})
    assert first.returncode == second.returncode == 0
    assert "warm-child 1" in first.stdout
    assert (tmp_path / "b" / "pid.txt").read_text() != (tmp_path / "c" / "pid.txt").read_text()


def test_an_import_time_variable_that_differs_runs_the_job_itself(server, tmp_path):
    done = _job(tmp_path / "d", server, {"HF_HOME": str(tmp_path / "cache"), "JOB_EXIT": "4"})
    assert done.returncode == 4
    assert "preloaded False" in done.stdout  # ran in its own interpreter
    assert "warm-child None" in done.stdout


def test_without_a_server_the_job_runs_itself(tmp_path):
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # private, but nothing listens in it
    done = _job(tmp_path / "e", None, {SOCKET: str(folder / "s.sock"), TOKEN: "x"})
    assert done.returncode == 0
    assert "warm-child None" in done.stdout


def test_the_jobs_threads_and_tmpdir_apply_in_the_child(server, tmp_path):
    """The server sized OpenBLAS's pool (numpy) at 1 and resolved its temporary folder before
    forking; the child takes the job's values, as a fresh interpreter would."""
    job_tmp = tmp_path / "job-tmp"
    job_tmp.mkdir()
    threads = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "2")
    done = _job(tmp_path / "t", server, {**threads, "TMPDIR": str(job_tmp), "JOB_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "warm-child 1" in done.stdout
    assert "blas [2]" in done.stdout
    assert f"tmpdir {job_tmp}" in done.stdout


# -- when a job runs itself --------------------------------------------------------------------


def test_the_variable_is_ignored_unless_the_config_turns_warm_start_on(server, tmp_path):
    """A socket variable left in the environment (a run with warm_start off inside a warm
    run's shell) is not honoured: the job does not send its environment to anyone."""
    for name, config in (("off", {"warm_start": False}), ("absent", {"device": "cpu"})):
        done = _job(tmp_path / name, server, {"JOB_CONFIG": json.dumps(config)})
        assert done.returncode == 0, done.stderr
        assert "warm-child None" in done.stdout, name
    # an absent key reads as off: the schema's default, which jobs do not parse to hand over
    from vislaw.config import schema_node

    assert schema_node("warm_start")["default"] is False


def test_a_job_that_may_use_cuda_runs_itself(server, tmp_path):
    cuda = {"JOB_CONFIG": json.dumps({"warm_start": True, "device": "cuda"})}
    for name, env in (("cuda", cuda), ("gpus", {"JOB_GPUS": "1"})):
        done = _job(tmp_path / name, server, env)
        assert done.returncode == 0, done.stderr
        assert "warm-child None" in done.stdout, name


def test_no_job_is_forked_once_cuda_is_initialised_in_the_server(tmp_path):
    started = _start(tmp_path, ["decimal", "warm_cuda_probe"])
    try:
        done = _job(tmp_path / "job", started, {"JOB_EXIT": "6"})
    finally:
        warm.stop(started.process)
    assert done.returncode == 6
    assert "warm-child None" in done.stdout


# -- the waiting job and its child -------------------------------------------------------------


def test_killing_the_waiting_job_kills_its_childs_process_group(server, tmp_path):
    folder = tmp_path / "f"
    job = _job(folder, server, {"JOB_SLEEP": "120", "JOB_GRANDCHILD": "1"}, wait=False)
    child = int(_wait_for(folder / "pid.txt"))
    grandchild = int(_wait_for(folder / "grandchild.txt"))
    assert child != job.pid
    assert os.getsid(child) == child  # its own session: the server's signals are not its
    assert os.getpgid(grandchild) == child
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert _gone(child), f"child {child} outlived its job"
    assert _gone(grandchild), f"grandchild {grandchild} outlived its job"


def test_a_child_holds_no_other_jobs_connection(server, tmp_path):
    first = _job(tmp_path / "g1", server, {"JOB_SLEEP": "60"}, wait=False)
    second = _job(tmp_path / "g2", server, {"JOB_SLEEP": "60"}, wait=False)
    try:
        _wait_for(tmp_path / "g1" / "pid.txt")
        child = int(_wait_for(tmp_path / "g2" / "pid.txt"))
        fds = [os.readlink(f) for f in Path(f"/proc/{child}/fd").iterdir() if f.exists()]
    finally:
        for job in (first, second):
            job.kill()
            job.wait()
    sockets = [fd for fd in fds if fd.startswith("socket:")]
    assert len(sockets) == 1, fds  # its own job's connection, not the listener nor the other's
    assert not [fd for fd in fds if "eventpoll" in fd], fds  # nor the server's selector


def test_a_finished_job_is_not_failed_by_the_server_dying(tmp_path):
    """The child reports its status itself: a server stopped before it could reap the child,
    then killed, does not turn a finished job into a failed one."""
    started = _start(tmp_path, ["decimal"])
    try:
        job = _job(tmp_path / "job", started, {"JOB_EXIT": "5", "JOB_SLEEP": "1"}, wait=False)
        child = int(_wait_for(tmp_path / "job" / "pid.txt"))
        started.process.send_signal(signal.SIGSTOP)
        assert _gone(child)
        started.process.send_signal(signal.SIGKILL)
        assert job.wait(timeout=30) == 5
    finally:
        warm.stop(started.process)


# -- the server's socket ------------------------------------------------------------------------


def test_the_socket_is_in_a_private_folder_with_an_unpredictable_name(server, tmp_path):
    address = Path(server.address)
    folder = address.parent
    assert folder != Path(tempfile.gettempdir())  # not in the shared temporary folder
    info = folder.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
    assert stat.S_IMODE(info.st_mode) == 0o700
    assert stat.S_IMODE(address.stat().st_mode) & 0o077 == 0
    assert str(os.getpid()) not in folder.name
    other = _start(tmp_path, ["decimal"])  # a second run of the same process: another folder
    warm.stop(other.process)
    assert Path(other.address).parent != folder


def test_a_request_without_the_secret_is_refused_and_nothing_runs(server, tmp_path):
    for name, token in (("wrong", "0" * 64), ("none", None)):
        request = _request(server, tmp_path / name, token)
        answer = _send_request(server.address, request)
        assert '"accepted": true' not in answer, name
        time.sleep(0.5)
        assert not (tmp_path / name / "marker.txt").exists(), name
    # the same request with the run's secret does run: the refusal was the secret's
    request = _request(server, tmp_path / "right", server.env.get(TOKEN, ""))
    answers = _send_request(server.address, request, messages=2)
    assert answers == '{"accepted": true} {"status": 0}'
    assert (tmp_path / "right" / "marker.txt").exists()


def test_an_idle_connection_does_not_block_other_jobs(server, tmp_path):
    idle, half = (socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(2))
    idle.connect(server.address)  # sends nothing
    half.connect(server.address)
    half.sendall(b"\x00\x00")  # half a header, then nothing
    try:
        done = _job(tmp_path / "h", server, {})  # times out (60 s) if the server waits
        assert done.returncode == 0, done.stderr
        assert "warm-child 1" in done.stdout
        for conn in (idle, half):
            conn.settimeout(30)
            assert conn.recv(1) == b""  # dropped after its receive deadline (3 s here)
    finally:
        idle.close()
        half.close()


def test_a_squatted_path_gets_no_request(tmp_path):
    """A socket in a folder others may write (here: this user's, mode 0755) is not trusted:
    the job runs itself and the listener receives nothing."""
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    squatter = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    squatter.bind(str(folder / "s.sock"))
    squatter.listen(1)
    squatter.settimeout(0.5)
    try:
        done = _job(tmp_path / "job", None, {SOCKET: str(folder / "s.sock"), TOKEN: "x"})
        assert done.returncode == 0, done.stderr
        assert "warm-child None" in done.stdout
        with pytest.raises(TimeoutError):
            squatter.accept()
    finally:
        squatter.close()


def test_a_killed_server_leaves_no_socket_and_jobs_run_themselves(tmp_path):
    terminated = _start(tmp_path / "term", ["decimal"])
    terminated.process.terminate()
    terminated.process.wait(timeout=30)
    assert not Path(terminated.address).parent.exists()  # its own clean-up on SIGTERM
    killed = _start(tmp_path / "kill", ["decimal"])
    killed.process.kill()
    killed.process.wait(timeout=30)
    assert Path(killed.address).exists()  # SIGKILL: nothing can clean up in the server
    done = _job(tmp_path / "job", killed, {"JOB_EXIT": "7"})
    assert done.returncode == 7
    assert "warm-child None" in done.stdout  # the stale socket refused it: it ran itself
    warm.stop(killed.process)  # the workflow's onerror/onsuccess
    assert not Path(killed.address).parent.exists()


def test_the_server_leaves_when_its_parent_dies(tmp_path):
    """Started for a Snakemake process that is then killed: the server does not linger."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, time; from vislaw import warm; "
            "warm.start(modules=['decimal']); print(os.environ[warm.SOCKET_VAR], flush=True); "
            "time.sleep(120)",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    address = Path(parent.stdout.readline().strip())
    deadline = time.monotonic() + 60
    while not address.exists():
        assert time.monotonic() < deadline, "the server did not start listening"
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 30
    while address.exists():  # the server removes its socket on the way out
        assert time.monotonic() < deadline, "the server outlived its parent"
        time.sleep(0.05)


# -- another user on the same machine ----------------------------------------------------------


@needs_root
def test_another_user_cannot_reach_the_socket_nor_run_a_job(tmp_path):
    """Even with a umask of 000, the socket is out of another uid's reach; and where its
    folder's mode were loosened, the server refuses that uid by SO_PEERCRED, secret or not."""
    started = _start(tmp_path, ["decimal"], umask=0o000)
    try:
        request = _request(started, tmp_path / "other", started.env.get(TOKEN, ""))
        answer = _as_nobody(lambda: _send_request(started.address, request))
        assert '"accepted": true' not in answer
        assert "PermissionError" in answer  # the private folder: no way in
        folder = Path(started.address).parent
        if folder != Path(tempfile.gettempdir()):
            folder.chmod(0o711)
        Path(started.address).chmod(0o777)
        answer = _as_nobody(lambda: _send_request(started.address, request))
        assert '"accepted": true' not in answer, answer
        time.sleep(0.5)
        assert not (tmp_path / "other" / "marker.txt").exists()
        assert "refused a connection from uid 65534" in (tmp_path / "server.log").read_text()
    finally:
        warm.stop(started.process)


@needs_root
def test_a_server_of_another_user_gets_no_request(tmp_path):
    """A socket another uid managed to bind in this user's private folder (its mode was
    loosened for a moment): the job checks the server's uid before sending its environment."""
    folder = Path(tempfile.mkdtemp(prefix="vislaw-squat-"))  # reachable by uid 65534 via /tmp
    address = str(folder / "s.sock")
    ready_read, ready_write = os.pipe()

    def squat() -> str:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(address)
        listener.listen(1)
        os.write(ready_write, b"1")
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.settimeout(3)
        received = b""
        try:
            while more := conn.recv(1 << 16):
                received += more
        except TimeoutError:
            pass
        return f"received {len(received)} bytes"

    try:
        folder.chmod(0o777)
        result: list[str] = []
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the squatter's supervisor
            os._exit(0 if _as_nobody(squat).startswith("received 0 ") else 1)
        select.select([ready_read], [], [], 30)
        folder.chmod(0o700)
        done = _job(tmp_path / "job", None, {SOCKET: address, TOKEN: "x"})
        _, status = os.waitpid(pid, 0)
        result.append(str(os.waitstatus_to_exitcode(status)))
        assert done.returncode == 0, done.stderr
        assert "warm-child None" in done.stdout
        assert result == ["0"], "the other user's listener received the job's request"
    finally:
        os.close(ready_read)
        os.close(ready_write)
        folder.chmod(0o700)
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()

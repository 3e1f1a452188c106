"""Warm start (vislaw.warm): a job's script runs in a fork of a server that imported modules
once; its output, exit status, folder and environment are the job's; a job the server must
not run (other interpreter or import-time environment), or one without a server, runs itself;
a job killed while waiting takes its forked child with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vislaw import warm

ROOT = Path(__file__).resolve().parents[1]

# The job: delegate first (as vislaw.jobs.job_log does), then report where it ran.
JOB = textwrap.dedent(
    """
    import os, sys, time
    from vislaw.warm import delegate
    delegate()
    print("preloaded", "decimal" in sys.modules, flush=True)
    print("warm-child", os.environ.get("VISLAW_WARM_CHILD"), flush=True)
    print("argv", sys.argv[1:], flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    Path = __import__("pathlib").Path
    Path("pid.txt").write_text(str(os.getpid()))
    Path("marker.txt").write_text(os.environ.get("JOB_MARKER", "unset"))
    time.sleep(float(os.environ.get("JOB_SLEEP", "0")))
    sys.exit(int(os.environ.get("JOB_EXIT", "0")))
    """
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server preloading one light module (``decimal``) that no job imports itself."""
    saved = {k: os.environ.get(k) for k in (warm.SOCKET_VAR, "PYTHONPATH")}
    # the jobs below run with PYTHONPATH=<repo>; an import-time variable, so the server too
    os.environ["PYTHONPATH"] = str(ROOT)
    log = tmp_path_factory.mktemp("warm") / "server.log"
    process = warm.start(modules=["decimal"], log=log)
    address = os.environ[warm.SOCKET_VAR]
    deadline = time.monotonic() + 60
    while not Path(address).exists():
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "the server did not start listening"
        time.sleep(0.05)
    yield address
    warm.stop(process)
    assert not Path(address).exists(), "the server left its socket behind"
    assert log.exists()  # the server's own output went to its log, not the terminal
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _job(
    folder: Path, env: dict[str, str], *args: str, wait: bool = True
) -> subprocess.CompletedProcess | subprocess.Popen:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "job.py"
    script.write_text(JOB)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    command = [sys.executable, str(script), *args]
    if not wait:
        return subprocess.Popen(command, cwd=folder, env=full_env)
    return subprocess.run(command, cwd=folder, env=full_env, capture_output=True, text=True)


def test_a_job_runs_in_a_warm_child_with_its_own_io_folder_and_env(server, tmp_path):
    done = _job(tmp_path / "a", {"JOB_MARKER": "m1", "JOB_EXIT": "3"}, "--x", "1")
    assert done.returncode == 3, done.stderr
    assert "preloaded True" in done.stdout  # the server's import, inherited by the fork
    assert "warm-child 1" in done.stdout
    assert "argv ['--x', '1']" in done.stdout
    assert "to stderr" in done.stderr
    assert (tmp_path / "a" / "marker.txt").read_text() == "m1"  # its env, its folder


def test_each_job_is_a_fresh_fork(server, tmp_path):
    first = _job(tmp_path / "b", {})
    second = _job(tmp_path / "c", {})
    assert first.returncode == second.returncode == 0
    assert (tmp_path / "b" / "pid.txt").read_text() != (tmp_path / "c" / "pid.txt").read_text()


def test_an_import_time_variable_that_differs_runs_the_job_itself(server, tmp_path):
    done = _job(tmp_path / "d", {"HF_HOME": str(tmp_path / "other-cache"), "JOB_EXIT": "4"})
    assert done.returncode == 4
    assert "preloaded False" in done.stdout  # ran in its own interpreter
    assert "warm-child None" in done.stdout


def test_without_a_server_the_job_runs_itself(tmp_path):
    env = {warm.SOCKET_VAR: str(tmp_path / "absent.sock")}
    done = _job(tmp_path / "e", env)
    assert done.returncode == 0
    assert "warm-child None" in done.stdout


def test_killing_the_waiting_job_kills_its_child(server, tmp_path):
    folder = tmp_path / "f"
    job = _job(folder, {"JOB_SLEEP": "120"}, wait=False)
    pid_file = folder / "pid.txt"
    deadline = time.monotonic() + 30
    while not pid_file.exists():
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert child != job.pid
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 30
    while _running(child):
        assert time.monotonic() < deadline, f"child {child} outlived its job"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


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

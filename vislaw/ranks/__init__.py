"""The one launcher: how a job hands a call to its rank processes and starts them.

Every multi-process job of the workflow goes through here, so each of these is spelled once:

- **the checked config**: one file per run and config content (:func:`run_config_file`,
  ``<run>/.run_config/<sha>.yaml``), written by the Snakefile when the run starts and read by
  every rank (``config.load_config``); a job never writes its own copy.
- **the call**: a JSON file naming a function (``module:function``) and its keyword arguments
  (:func:`call_file`), run in each rank by ``python -m vislaw.ranks FILE`` (:func:`rank_program`;
  the entry point is :mod:`vislaw.ranks.__main__`, this package's library code is here).
  The arguments are plain JSON (paths as strings, the config as its file's path).
- **per-GPU ranks** (features, embeddings: no collectives, each rank writes its share to
  :func:`rank_part` and the job merges): :func:`run_on_gpus` starts one process per GPU of the
  job, each seeing one (``CUDA_VISIBLE_DEVICES``), and names every rank that failed with what it
  ran.
- **torchrun / accelerate / srun** (training, lmms-eval): :func:`torchrun_command`,
  :func:`accelerate_command`, :func:`srun_command` build the command lines around the rank
  program, :func:`run_launcher` runs one and names what failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

RANK_MODULE = "vislaw.ranks"


# --- the run's checked config ----------------------------------------------------------------
def run_config_file(config: Mapping[str, Any]) -> Path:
    """The file holding this checked config for the processes a job starts, written (atomically)
    only if absent: ``<results_dir>/<run>/.run_config/<digest>.yaml`` (the digest of its sorted JSON).

    Named by its content, so a file once written never changes (no job reads a config another
    run is rewriting, and nothing Snakemake watches is touched when the config is unchanged);
    the Snakefile writes it when a run starts and each job finds it there."""
    from vislaw.config import write_run_config
    from vislaw.layout import RunLayout

    canonical = json.dumps(dict(config), sort_keys=True, default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
    path = Path(RunLayout.from_config(config).run_dir) / ".run_config" / f"{digest}.yaml"
    if not path.is_file():
        write_run_config(config, path)
    return path


# --- the call each rank runs -----------------------------------------------------------------
@contextlib.contextmanager
def call_file(
    target: str, kwargs: Mapping[str, Any], folder: str | Path, what: str
) -> Iterator[Path]:
    """A call ``target(**kwargs)`` (``target`` is ``module:function``) saved as JSON in
    ``folder`` for the job's duration (removed afterwards, also on failure)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record = {"target": target, "what": what, "kwargs": dict(kwargs)}
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix=".vislaw-call-", dir=folder, delete=False
    ) as handle:
        json.dump(record, handle, indent=1)
    path = Path(handle.name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def rank_program(call: str | Path) -> list[str]:
    """What a launcher runs in each rank: ``-m vislaw.ranks <call file>`` (prefix it with the
    interpreter for a plain process; torchrun and accelerate take it as is)."""
    return ["-m", RANK_MODULE, str(call)]


def run_call(path: str | Path) -> Any:
    """Run a saved call in this (rank) process: import its function and call it."""
    import importlib

    record = json.loads(Path(path).read_text(encoding="utf-8"))
    module, _, name = record["target"].partition(":")
    function = getattr(importlib.import_module(module), name)
    return function(**record["kwargs"])


# --- per-GPU ranks ----------------------------------------------------------------------------
def rank_part(path: str | Path, rank: int, world: int) -> Path:
    """Rank ``rank``'s part of ``path``: ``<stem>.rank<r>of<n><suffix>`` beside it."""
    path = Path(path)
    return path.with_name(f"{path.stem}.rank{rank}of{world}{path.suffix}")


def run_on_gpus(commands: Sequence[Sequence[str]], what: str) -> None:
    """Run ``commands[rank]`` for every rank at once, rank r on GPU r of the job's
    ``CUDA_VISIBLE_DEVICES`` (0..n-1 when unset), wait for all, and raise RuntimeError naming
    the ranks that failed, their exit codes and what each ran (``what`` names the job)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    world = len(commands)
    devices = visible.split(",") if visible else [str(i) for i in range(world)]
    procs = []
    for rank, command in enumerate(commands):
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": devices[rank % len(devices)]}
        procs.append(subprocess.Popen(list(command), env=env))
    codes = [proc.wait() for proc in procs]
    failed = [rank for rank, code in enumerate(codes) if code != 0]
    if failed:
        lines = [f"  rank {r} (exit {codes[r]}): {' '.join(commands[r])}" for r in failed]
        raise RuntimeError(f"{what}: rank(s) {failed} of {world} failed\n" + "\n".join(lines))


def run_call_on_gpus(
    target: str, calls: Sequence[Mapping[str, Any]], folder: str | Path, what: str
) -> None:
    """``target(**calls[rank])`` in one process per GPU (:func:`run_on_gpus`), each call saved
    to a file in ``folder`` (:func:`call_file`) for the job's duration."""
    with contextlib.ExitStack() as stack:
        files = [
            stack.enter_context(call_file(target, call, folder, f"{what}, rank {rank}"))
            for rank, call in enumerate(calls)
        ]
        run_on_gpus([[sys.executable, *rank_program(f)] for f in files], what)


# --- torchrun, accelerate, srun ---------------------------------------------------------------
def torchrun_command(
    program: Sequence[str],
    gpus: int,
    *,
    nodes: int = 1,
    rdzv_endpoint: str | None = None,
    rdzv_id: str = "vislaw",
) -> list[str]:
    """torchrun of ``program`` (e.g. :func:`rank_program`) with ``gpus`` ranks on one node
    (standalone) or as one of ``nodes`` agents meeting at ``rdzv_endpoint`` (host:port)."""
    if nodes > 1:
        if not rdzv_endpoint:
            raise ValueError("a multi-node launch needs a rendezvous endpoint (host:port)")
        rendezvous = [
            f"--nnodes={nodes}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={rdzv_endpoint}",
            f"--rdzv-id={rdzv_id}",
        ]
    else:
        rendezvous = ["--standalone"]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc_per_node={gpus}",
        *program,
    ]


def srun_command(agent: Sequence[str], nodes: int) -> list[str]:
    """One launcher agent (torchrun) per node of the job's allocation. ``--overlap``: the job's
    own step (the Snakemake job) holds the allocation, the agents share it."""
    return [
        "srun",
        f"--nodes={nodes}",
        f"--ntasks={nodes}",
        "--ntasks-per-node=1",
        "--overlap",
        "--kill-on-bad-exit=1",
        *agent,
    ]


def rendezvous_endpoint() -> str:
    """host:port on this (the allocation's first) node, where the agents meet."""
    import socket

    from vislaw.io.ports import free_port

    host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    return f"{host}:{free_port()}"


def accelerate_command(program: Sequence[str], processes: int) -> list[str]:
    """``accelerate launch`` of ``program`` with ``processes`` ranks on one node."""
    from vislaw.io.ports import free_port

    command = [sys.executable, "-m", "accelerate.commands.launch"]
    command += [f"--num_processes={processes}", "--num_machines=1", "--mixed_precision=no"]
    command += ["--dynamo_backend=no", f"--main_process_port={free_port()}"]
    # --multi_gpu is accelerate's torchrun launcher; on a CPU machine its ranks use gloo
    # (accelerate's --cpu would start one process unless MPI is set up).
    command.append("--multi_gpu")
    return [*command, *program]


def run_launcher(command: Sequence[str], what: str) -> None:
    """Run a launcher command (torchrun, accelerate, srun) with its output in the job's log;
    RuntimeError naming ``what`` and the command when it fails."""
    print(" ".join(command), flush=True)  # before the launcher's own output, in order
    done = subprocess.run(list(command), stdout=sys.stdout, stderr=sys.stderr, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what}: exit {done.returncode} from {' '.join(command)}")

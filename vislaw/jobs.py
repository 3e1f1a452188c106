"""What every rule entry point does before its real work: log to the rule's log file, honour
the job's thread count, and go offline when the config says so."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

STEP_SECONDS = "[vislaw] step seconds:"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")
# The offline switches a run set itself (comma-separated), as opposed to the user's own.
SET_BY_RUN = "VISLAW_OFFLINE_SET_BY_RUN"


def _setting(config: Mapping[str, Any], key: str) -> Any:
    """Top-level ``key`` of a config that may be unchecked (Snakemake hands scripts the config
    as written), else the schema's default for it. Only this key is checked: the Snakefile
    checked the whole config before any job, and a job must not refuse it for an unrelated key."""
    from vislaw.sections import section_values

    return section_values(key, config.get(key))


def runtime_environment(config: Mapping[str, Any]) -> dict[str, str]:
    """The environment variables a config asks every job to run with: the prepared HF cache and
    the offline switches. Libraries read them when imported, so they are set before any heavy
    import (and before a warm-start server preloads: vislaw.warm)."""
    from vislaw.data.settings import CacheSettings

    env = {"TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM", "false")}
    hf_home = CacheSettings.from_mapping(_setting(config, "cache")).hf_home
    if hf_home:  # the cache `prepare` filled (vislaw.prepare.hub): read it, never the network
        env["HF_HOME"] = str(Path(hf_home).resolve())
        # lmms-eval 0.7.3 moves its datasets cache to node-local scratch when HF_HOME is on a
        # network file system, where `prepare` never built it: pin it to the prepared one.
        env["LMMS_EVAL_DATASETS_CACHE"] = str(Path(hf_home).resolve() / "datasets")
    if _setting(config, "offline") or hf_home:
        env.update(dict.fromkeys(OFFLINE_VARS, "1"))
    return env


def run_environment(config: Mapping[str, Any]) -> dict[str, str]:
    """``runtime_environment`` for Snakemake's own process (a warm-start run, rules/warm.smk),
    plus the names of the offline switches it turns on that the user had not turned on (unset, or
    set to something else such as ``0``): `prepare` clears exactly those (go_online) and keeps a
    user's own ``HF_HUB_OFFLINE=1``."""
    env = runtime_environment(config)
    ours = [name for name in OFFLINE_VARS if name in env and os.environ.get(name) != env[name]]
    env[SET_BY_RUN] = ",".join(ours)
    return env


def go_online() -> None:
    """Clear the offline switches the run set, for a job that downloads (rules prepare_data,
    prepare_models).

    A warm-start run (rules/warm.smk) sets them in Snakemake's own environment, so every job
    inherits them; `prepare` is the one step that must reach the network. The user's own
    switches stay: with ``HF_HUB_OFFLINE=1`` set by hand, `prepare` checks and marks a cache
    copied from another machine without reaching the Hub. Called before ``job_log``: the
    environment then differs from the warm server's, so the job runs in its own process, where
    huggingface_hub reads the switches afresh on import."""
    for name in filter(None, os.environ.pop(SET_BY_RUN, "").split(",")):
        os.environ.pop(name, None)


def apply_runtime_settings(config: Mapping[str, Any], threads: int) -> None:
    """Offline switches and thread count; call before importing torch-heavy modules."""
    os.environ.update(runtime_environment(config))
    import torch

    torch.set_num_threads(max(1, int(threads)))


def hand_over_to_warm_server() -> None:
    """Run this job in a fork of the run's warm-start server when its config turns warm start
    on (vislaw.warm.delegate: returns here when there is no usable server or the job may use
    CUDA). The config is the one Snakemake's script directive put in the script's globals as
    ``snakemake``; without it, or without ``warm_start: true`` in it, the job runs itself, so a
    socket variable left in the environment is never honoured by a run that did not ask for it.

    The raw value is read, not the checked one: a job must hand over before it parses the
    schema (that parse is what warm start saves), and an absent key means the schema's default,
    false (tests/unit/core/test_warm.py checks that default)."""
    snakemake = getattr(sys.modules.get("__main__"), "snakemake", None)
    config = getattr(snakemake, "config", None)
    if not isinstance(config, Mapping) or config.get("warm_start") is not True:
        return
    resources = getattr(snakemake, "resources", None) or {}
    try:
        gpus = int(resources.get("gpu", 0) or 0)
    except (TypeError, ValueError):
        gpus = 1  # unreadable: assume it may use a GPU, and run here
    from vislaw.warm import delegate

    delegate(config.get("device"), gpus)


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to the rule's log file.

    Every workflow script enters this first, so it is also where a job hands itself to the
    warm-start server of a local run (hand_over_to_warm_server).
    """
    hand_over_to_warm_server()
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "w", buffering=1) as handle,
        contextlib.redirect_stdout(handle),
        contextlib.redirect_stderr(handle),
    ):
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise
        # the job's own seconds, after interpreter start-up (benchmarks/bench_demo.py reads it)
        print(f"{STEP_SECONDS} {time.perf_counter() - started:.3f}", file=handle)

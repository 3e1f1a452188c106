"""Run the stock lmms-eval on one model for several benchmarks, one fixed-name result each.

What the evaluate rule calls. One process loads the model once (through lmms-eval's own model
registry, i.e. our entry point) and then, benchmark by benchmark, runs lmms-eval's
``simple_evaluate`` with the arguments its CLI would pass (the CLI's own parser fills every
default) and saves the outcome with lmms-eval's own ``EvaluationTracker``. That writer names its
files ``<output>/<model>/<date>_results.json``; we read that very file (tasks write other
``*_results.json`` files of their own), add our notes under ``vislaw`` and store it under the
fixed name the DAG expects. A benchmark whose external judge (GPT-scored MMBench) is missing or
fails is stored as not scored, with the reason, never as a score made of failed calls.

Why a loop in one process rather than ``lmms-eval --tasks a,b,c``: importing lmms-eval and
indexing its task folders costs ~10 s and loading a 7B model far more, so one process per
encoder keeps the job count proportionate; and evaluating task by task lets one broken
benchmark fail alone: the others are still written and the error names the benchmark, the
task and the cause (the job then fails, so Snakemake reruns only what is missing).

CLI: ``python -m vislaw.eval.runner --pretrained results/demo/stage2/clip224 --benchmark
synth_color --include-path results/demo/eval/tasks --out-dir /tmp/eval``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import shutil
import socket
import sys
import traceback
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vislaw.eval.registration import MODEL_ID
from vislaw.eval.results import ResultsError, benchmark_rows, read_results
from vislaw.eval.settings import EvalSettings
from vislaw.eval.tasks import Benchmark, Judge, get_benchmark
from vislaw.io.atomic import atomic_path, write_text_atomic


@dataclass(frozen=True)
class TaskFailure:
    benchmark: str
    task: str
    reason: str


class EvaluationError(RuntimeError):
    """Some benchmarks failed; ``failures`` says which and why (the others were written)."""

    def __init__(self, failures: Sequence[TaskFailure], done: Sequence[str]) -> None:
        self.failures = list(failures)
        lines = [f"lmms-eval failed on {len(failures)} benchmark(s):"]
        lines += [f"  {f.benchmark} (task {f.task}): {f.reason}" for f in failures]
        if done:
            lines.append(f"  written: {', '.join(done)}")
        super().__init__("\n".join(lines))


def model_args_string(
    pretrained: str | Path,
    device: str = "cpu",
    dtype: str = "float32",
    max_new_tokens: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """``--model_args`` for our plugin (what the results file records as the model)."""
    parts = {"pretrained": str(pretrained), "device": device, "dtype": dtype}
    if max_new_tokens:
        parts["max_new_tokens"] = str(int(max_new_tokens))
    parts.update({k: str(v) for k, v in (extra or {}).items()})
    for key, value in parts.items():
        if "," in value or "=" in value:
            raise ValueError(f"model argument {key}={value!r} may not hold ',' or '='")
    return ",".join(f"{k}={v}" for k, v in parts.items())


@contextlib.contextmanager
def _argv(argv: Sequence[str]) -> Iterator[None]:
    saved = sys.argv
    sys.argv = list(argv)
    try:
        yield
    finally:
        sys.argv = saved


def lmms_eval_argv(
    model_args: str,
    tasks: Sequence[str],
    batch_size: int = 8,
    seed: int = 0,
    include_path: str | Path | None = None,
    limit: int | None = None,
) -> list[str]:
    """The ``lmms-eval`` command line (without the program name) for our model on ``tasks``:
    the one place that decides it, whether it is parsed in this process
    (:func:`cli_namespace`) or handed to a launcher."""
    argv = ["--model", MODEL_ID, "--model_args", model_args, "--batch_size", str(batch_size)]
    argv += ["--seed", str(seed), "--log_samples", "--tasks", ",".join(tasks)]
    if include_path is not None:
        argv += ["--include_path", str(include_path)]
    if limit:
        argv += ["--limit", str(int(limit))]
    return argv


def cli_namespace(argv: Sequence[str]) -> argparse.Namespace:
    """lmms-eval's CLI arguments for ``argv``, every default as its own parser sets it."""
    from lmms_eval.__main__ import parse_eval_args

    with _argv(["lmms-eval", *argv]):
        _, args = parse_eval_args()
    return args


def task_manager(
    tasks: Sequence[str], include_path: str | Path | None = None, verbosity: str = "INFO"
) -> Any:
    """lmms-eval's task index for ``tasks``, where a task folder under ``include_path`` wins
    over an installed task of the same name.

    lmms-eval itself lets the installed task win silently, so a copy pointed at another
    dataset (vislaw.eval.task_copies) would be ignored. When every task is under
    ``include_path`` the ~2,000 installed task files are not indexed at all (seconds saved).
    """
    from lmms_eval.tasks import TaskManager

    class IncludeFirst(TaskManager):
        def initialize_tasks(self, include_path=None, include_defaults=True):  # noqa: ANN001
            index = super().initialize_tasks(None, include_defaults) if include_defaults else {}
            if include_path is not None:
                index.update(super().initialize_tasks(include_path, include_defaults=False))
            return index

    path = str(include_path) if include_path is not None else None
    if path is not None:
        local = IncludeFirst(verbosity, path, include_defaults=False, model_name=MODEL_ID)
        if all(task in local.all_tasks for task in tasks):
            return local
    return IncludeFirst(verbosity, path, include_defaults=True, model_name=MODEL_ID)


def load_lmm(model_args: str, batch_size: int = 1):
    """Our model as lmms-eval builds it: resolved by name through its registry (entry point)."""
    from lmms_eval.models import get_model

    return get_model(MODEL_ID).create_from_arg_string(
        model_args, {"batch_size": batch_size, "device": None}
    )


def _reason(err: BaseException) -> str:
    """The root cause in one line (lmms-eval wraps dataset and scoring errors in retries)."""
    inner = err
    last = getattr(err, "last_attempt", None)  # tenacity.RetryError
    if last is not None and last.exception() is not None:
        inner = last.exception()
    return f"{type(inner).__name__}: {inner}".splitlines()[0]


def judge_unavailable(judge: Judge, timeout: float = 5.0) -> str | None:
    """Why ``judge`` cannot score now (no key, endpoint unreachable), or None when it can.

    Checked before the task runs: lmms-eval's MMBench evaluator would otherwise retry every
    answer against the API and then fill the failures in with a guess, and the score made of
    failed calls would look like a real one.
    """
    try:
        key_env, url_env, default_url = judge.endpoint(os.environ)
    except ValueError as err:
        return f"{judge.name} judge: {err}"
    if not os.environ.get(key_env):
        return f"{judge.name} judge: {key_env} is not set"
    url = urllib.parse.urlsplit(os.environ.get(url_env) or default_url)
    if not url.hostname:
        return f"{judge.name} judge: {url_env}={url.geturl()!r} is not a URL"
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        return f"{judge.name} judge: {url.hostname}:{port} unreachable ({err})"
    return None


# What lmms-eval's MMBench evaluator logs when the judge gave no answer for an item after all
# its retries (it then guesses a letter at random and carries on).
JUDGE_FAILURE_MESSAGE = "GPT API failed to answer"


@contextlib.contextmanager
def count_judge_failures() -> Iterator[list[str]]:
    """Collect lmms-eval's judge-failure log messages while the block runs (loguru sink)."""
    from loguru import logger

    failures: list[str] = []
    sink = logger.add(
        lambda message: failures.append(str(message)),
        level="INFO",
        filter=lambda record: JUDGE_FAILURE_MESSAGE in record["message"],
    )
    try:
        yield failures
    finally:
        logger.remove(sink)


def task_limit(bench: Benchmark, limit: int | None) -> int | None:
    """``limit`` rounded up to whole document groups (MME's question pairs), so that a limited
    run never hands the task's aggregation half a group."""
    if not limit:
        return None
    size = bench.group_size
    return -(-int(limit) // size) * size


def _write_not_scored(
    bench: Benchmark, reason: str, out_path: str | Path, samples_path: str | Path | None
) -> Path:
    """A results file with no scores and the reason (the table reports it as not scored)."""
    payload = {"results": {}, "vislaw": {"benchmark": bench.name, "task": bench.task}}
    payload["vislaw"]["not_scored"] = reason
    print(f"[vislaw] {bench.name} ({bench.task}) not scored: {reason}")
    if samples_path is not None:
        write_text_atomic(samples_path, "")
    write_text_atomic(out_path, json.dumps(payload, indent=2))
    return Path(out_path)


def _run_task(
    lm: Any, bench: Benchmark, task_manager: Any, cli_args: argparse.Namespace, work_dir: Path
) -> tuple[Path, Path | None] | None:
    """``simple_evaluate`` on one task, saved by lmms-eval's own tracker; returns the results
    and samples files it wrote for this model (None on a non-main rank, which gets no results).

    The paths are the ones the tracker builds (``<output>/<model_name_sanitized>/<date>_*``),
    not whatever matches a pattern: tasks write files of their own beside them (MMBench's
    ``submissions/*_results.json``).
    """
    from lmms_eval import evaluator
    from lmms_eval.loggers import EvaluationTracker
    from lmms_eval.utils import get_datetime_str

    tracker = EvaluationTracker(output_path=str(work_dir))
    stamp = get_datetime_str(timezone=cli_args.timezone)
    seeds = cli_args.seed
    results = evaluator.simple_evaluate(
        model=lm,
        model_args=cli_args.model_args,
        tasks=[bench.task],
        batch_size=cli_args.batch_size,
        limit=cli_args.limit,
        log_samples=True,
        evaluation_tracker=tracker,
        task_manager=task_manager,
        verbosity=cli_args.verbosity,
        random_seed=seeds[0],
        numpy_random_seed=seeds[1],
        torch_random_seed=seeds[2],
        fewshot_random_seed=seeds[3],
        cli_args=cli_args,
        datetime_str=stamp,
        process_docs_parallel=cli_args.process_docs_parallel,
        # several ranks: accelerate's gather on GPUs; on the CPU accelerate sees no devices to
        # gather across, so lmms-eval's torchrun path (a gloo process group) collects them
        distributed_executor_backend="accelerate" if "cuda" in str(lm.device) else "torchrun",
    )
    if results is None:
        if _rank() != 0:  # under accelerate launch only the main process gets the results
            return None
        raise RuntimeError("lmms-eval returned no results (not the main process?)")
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=stamp)
    folder = work_dir / tracker.general_config_tracker.model_name_sanitized
    produced = folder / f"{tracker.date_id}_results.json"
    if not produced.is_file():
        raise ResultsError(f"lmms-eval did not write its results file {produced}")
    tracker.save_results_samples(task_name=bench.task, samples=samples[bench.task])
    sample_file = folder / f"{tracker.date_id}_samples_{bench.task}.jsonl"
    return produced, sample_file if sample_file.is_file() else None


def _annotate(produced: Path, bench: Benchmark, lm: Any, limit: int | None) -> dict[str, Any]:
    """Our notes in the results JSON (key ``vislaw``): the benchmark, the limit applied and
    the documents that had several images (the model sees the first; docs/evaluation.md)."""
    data = read_results(produced)
    counts = getattr(lm, "multi_image_docs", {})
    n_docs = data.get("n-samples", {}).get(bench.task, {}).get("effective")
    multi = len(counts.get(bench.task, ()))
    data["vislaw"] = {"benchmark": bench.name, "task": bench.task, "limit": limit}
    data["vislaw"] |= {"documents": n_docs, "multi_image_documents": multi}
    if multi:
        print(
            f"[vislaw] {bench.name}: {multi} of {n_docs} documents have several images; the "
            "model is shown the first of each (docs/evaluation.md)"
        )
    write_text_atomic(produced, json.dumps(data, indent=2, default=str))
    return data


def evaluate_one(
    lm: Any,
    bench: Benchmark,
    out_path: str | Path,
    task_manager: Any,
    cli_args: argparse.Namespace,
    work_dir: Path,
    samples_path: str | Path | None = None,
) -> Path:
    """One benchmark through ``simple_evaluate``; its results JSON saved as ``out_path``.

    A judged benchmark whose judge failed on any answer is written as not scored, with the
    reason (:func:`evaluate_benchmarks` checks the judge is reachable before the run).
    """
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    cli_args.output_path = str(work_dir)
    cli_args.tasks = bench.task
    cli_args.limit = task_limit(bench, cli_args.limit)
    if cli_args.limit:
        print(f"[vislaw] {bench.name}: limit {cli_args.limit} documents (eval.limit)")
    with count_judge_failures() as judge_failures:
        written = _run_task(lm, bench, task_manager, cli_args, work_dir)
    if written is None:  # a non-main rank: the main process writes the outputs
        return Path(out_path)
    produced, sample_file = written
    if bench.judge is not None and judge_failures:
        reason = (
            f"{bench.judge.name} judge failed on {len(judge_failures)} answer(s) (API errors; "
            "lmms-eval guessed those), so the score is not a measurement"
        )
        return _write_not_scored(bench, reason, out_path, samples_path)
    _annotate(produced, bench, lm, cli_args.limit)
    benchmark_rows("check", bench, produced)  # the metric we will tabulate is really there
    if samples_path is not None:
        if sample_file is None:
            raise ResultsError(f"lmms-eval wrote no samples file for {bench.task}")
        with atomic_path(samples_path) as tmp:
            shutil.copyfile(sample_file, tmp)
    with atomic_path(out_path) as tmp:
        shutil.copyfile(produced, tmp)
    return Path(out_path)


def _write_unjudgeable(
    benchmarks: Sequence[Benchmark],
    outputs: Mapping[str, str | Path],
    samples: Mapping[str, str | Path] | None,
) -> dict[str, Path]:
    """Benchmarks whose judge is unavailable, written as not scored before the model loads."""
    written = {}
    for bench in benchmarks:
        reason = judge_unavailable(bench.judge) if bench.judge is not None else None
        if reason is not None:
            sample_path = (samples or {}).get(bench.name)
            written[bench.name] = _write_not_scored(bench, reason, outputs[bench.name], sample_path)
    return written


def evaluate_benchmarks(
    pretrained: str | Path,
    benchmarks: Sequence[Benchmark],
    outputs: Mapping[str, str | Path],
    include_path: str | Path | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    limit: int | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    samples: Mapping[str, str | Path] | None = None,
    model_extra: Mapping[str, Any] | None = None,
    processes: int = 1,
) -> dict[str, Path]:
    """Evaluate one model on ``benchmarks``; ``outputs[name]`` receives each results JSON.

    A benchmark whose external judge is unavailable (no key, endpoint unreachable) is written
    as not scored with the reason, before the model loads; ``limit`` is rounded up per task to
    whole document groups (:func:`task_limit`).

    ``processes`` > 1: the same call under ``accelerate launch`` with that many processes (one
    per GPU of the job; lmms-eval splits every task's questions across them and gathers the
    answers on the main process, which writes the outputs).

    Raises :class:`EvaluationError` listing every benchmark that failed, after writing the
    others. ``work_dir`` holds lmms-eval's own (timestamped) files while it runs and is removed
    afterwards; by default it sits beside the first output.
    """
    missing = [b.name for b in benchmarks if b.name not in outputs]
    if missing:
        raise ValueError(f"no output path for benchmark(s) {missing}")
    if any(b.local for b in benchmarks) and include_path is None:
        raise ValueError("local benchmarks need include_path (their task folders)")
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        call = dict(
            pretrained=str(pretrained),
            benchmarks=[dataclasses.asdict(b) for b in benchmarks],
            outputs={k: str(v) for k, v in outputs.items()},
            include_path=str(include_path) if include_path is not None else None,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            limit=limit,
            seed=seed,
            work_dir=str(work_dir) if work_dir else None,
            samples={k: str(v) for k, v in (samples or {}).items()},
            model_extra=dict(model_extra or {}),
        )
        return _launch_processes(call, processes)
    model_args = model_args_string(pretrained, device, dtype, max_new_tokens, model_extra)
    argv = lmms_eval_argv(
        model_args, [b.task for b in benchmarks], batch_size, seed, include_path, limit
    )
    base_args = cli_namespace(argv)
    manager = task_manager([b.task for b in benchmarks], include_path, base_args.verbosity)
    _check_tasks_known(benchmarks, manager, include_path)
    written = _write_unjudgeable(benchmarks, outputs, samples)
    benchmarks = [b for b in benchmarks if b.name not in written]
    if not benchmarks:
        return written
    lm = load_lmm(model_args, batch_size)
    root = Path(work_dir) if work_dir else Path(next(iter(outputs.values()))).parent
    failures = _evaluate_each(
        lm,
        benchmarks,
        outputs,
        samples,
        manager,
        base_args,
        root / f".lmms-eval-{os.getpid()}",
        written,
    )
    if failures:
        raise EvaluationError(failures, list(written))
    return written


def _check_tasks_known(
    benchmarks: Sequence[Benchmark], manager: Any, include_path: str | Path | None
) -> None:
    """Every benchmark's task is one lmms-eval indexed (else EvaluationError listing them)."""
    unknown = [b.task for b in benchmarks if b.task not in manager.all_tasks]
    if unknown:
        where = f" (include_path {include_path})" if include_path is not None else ""
        raise EvaluationError(
            [
                TaskFailure(b.name, b.task, f"task not found{where}")
                for b in benchmarks
                if b.task in unknown
            ],
            [],
        )


def _evaluate_each(
    lm: Any,
    benchmarks: Sequence[Benchmark],
    outputs: Mapping[str, str | Path],
    samples: Mapping[str, str | Path] | None,
    manager: Any,
    base_args: argparse.Namespace,
    scratch: Path,
    written: dict[str, Path],
) -> list[TaskFailure]:
    """Each benchmark in turn with the loaded model, into ``written``; the failures (one broken
    task must not hide the others' results). ``scratch`` is removed afterwards."""
    failures: list[TaskFailure] = []
    try:
        for bench in benchmarks:
            print(f"[vislaw] {datetime.datetime.now():%H:%M:%S} {bench.name} ({bench.task})")
            args = argparse.Namespace(**vars(base_args))
            try:
                written[bench.name] = evaluate_one(
                    lm,
                    bench,
                    outputs[bench.name],
                    manager,
                    args,
                    scratch / bench.name,
                    (samples or {}).get(bench.name),
                )
            except Exception as err:
                traceback.print_exc()
                failures.append(TaskFailure(bench.name, bench.task, _reason(err)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return failures


def run_evaluate(
    settings: EvalSettings,
    model_dir: str | Path,
    benchmarks: Sequence[Benchmark],
    outputs: Mapping[str, str | Path],
    *,
    samples: Mapping[str, str | Path] | None = None,
    include_path: str | Path | None = None,
    device: str = "cpu",
    seed: int = 0,
    processes: int = 1,
    config: Mapping[str, Any] | None = None,
    encoder: str | None = None,
) -> dict[str, Path]:
    """Step ``evaluate``: the stock lmms-eval on one stage-2 model folder, one results JSON
    (``outputs[name]``) and samples file (``samples[name]``) per benchmark, with the ``eval``
    settings (dtype, batch size, generation cap, limit). ``processes`` > 1: one rank per GPU
    under ``accelerate launch``. See :func:`evaluate_benchmarks`.

    With ``config`` (the checked workflow config) and ``encoder``, the plugin refuses a folder
    whose ``vlm.json`` does not record that encoder's spec (an edited or foreign stage folder
    would otherwise be scored under this encoder's name): lmms-eval passes model arguments as
    strings, so the plugin gets the run's checked config file (:func:`vislaw.ranks.run_config_file`).
    """
    call = dict(
        include_path=include_path,
        device=device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        max_new_tokens=settings.max_new_tokens,
        limit=settings.limit,
        seed=seed,
        samples=samples,
        processes=processes,
    )
    if config is None or encoder is None:
        return evaluate_benchmarks(model_dir, benchmarks, outputs, **call)
    from vislaw.ranks import run_config_file

    Path(next(iter(outputs.values()))).parent.mkdir(parents=True, exist_ok=True)
    extra = {"config": str(run_config_file(config)), "encoder": encoder}
    return evaluate_benchmarks(model_dir, benchmarks, outputs, model_extra=extra, **call)


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _launch_processes(call: dict[str, Any], processes: int) -> dict[str, Path]:
    """Run ``evaluate_benchmarks(**call)`` in ``processes`` ranks under ``accelerate launch``
    (:mod:`vislaw.ranks`: the call saved beside the outputs); the outputs it wrote."""
    from vislaw.ranks import accelerate_command, call_file, rank_program, run_launcher

    first = Path(next(iter(call["outputs"].values())))
    what = f"accelerate launch of {processes} lmms-eval processes"
    with call_file("vislaw.eval.runner:evaluate_rank", call, first.parent, what) as path:
        run_launcher(accelerate_command(rank_program(path), processes), what)
    return {name: Path(path) for name, path in call["outputs"].items()}


def evaluate_rank(benchmarks: list[dict[str, Any]], **call: Any) -> None:
    """A rank of ``accelerate launch``: the saved evaluate_benchmarks call (benchmarks as
    records)."""
    records = [
        Benchmark(**{k: tuple(v) if isinstance(v, list) else v for k, v in b.items()})
        for b in benchmarks
    ]
    evaluate_benchmarks(benchmarks=records, **call)


def _cli_settings(args: argparse.Namespace) -> EvalSettings:
    """The ``eval`` settings of a CLI run: the schema's defaults (a config with no ``eval``
    section), replaced by the options given."""
    from vislaw.config import schema

    defaults = {k: v["default"] for k, v in schema()["properties"]["eval"]["properties"].items()}
    given = {"dtype": args.dtype, "batch_size": args.batch_size}
    given |= {"max_new_tokens": args.max_new_tokens, "limit": args.limit}
    values = {**defaults, **{k: v for k, v in given.items() if v is not None}}
    return EvalSettings.from_mapping(values, "eval")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.eval.runner",
        description="Evaluate a vislaw stage folder on benchmarks with lmms-eval.",
    )
    parser.add_argument("--pretrained", help="stage-2 folder (vlm.json)")
    parser.add_argument("--benchmark", action="append", help="repeatable")
    parser.add_argument("--include-path", help="folder of local task folders")
    parser.add_argument("--out-dir", help="receives <benchmark>.json")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-new-tokens", type=int)
    parser.add_argument("--limit", type=int, help="questions per task (testing only)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.pretrained or not args.benchmark or not args.out_dir:
        parser.error("--pretrained, --benchmark and --out-dir are required")
    benchmarks = [get_benchmark(name) for name in args.benchmark]
    out = Path(args.out_dir)
    written = run_evaluate(
        _cli_settings(args),
        args.pretrained,
        benchmarks,
        {b.name: out / f"{b.name}.json" for b in benchmarks},
        include_path=args.include_path,
        device=args.device,
        seed=args.seed,
    )
    for name, path in written.items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

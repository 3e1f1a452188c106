"""The evaluation loop: one loaded model through lmms-eval's ``simple_evaluate``, benchmark by
benchmark, one fixed-name result each.

One process loads the model once (through lmms-eval's own model registry, i.e. our entry point)
and then, benchmark by benchmark, runs ``simple_evaluate`` with the arguments lmms-eval's CLI
would pass (vislaw.eval.lmms_bridge) and saves the outcome with lmms-eval's own
``EvaluationTracker``. That writer names its files ``<output>/<model>/<date>_results.json``; we
read that very file (tasks write other ``*_results.json`` files of their own), add our notes
under ``vislaw`` and store it under the fixed name the DAG expects. A benchmark whose external
judge (vislaw.eval.judge) is missing or fails is stored as not scored, with the reason, never
as a score made of failed calls.

Why a loop in one process rather than ``lmms-eval --tasks a,b,c``: importing lmms-eval and
indexing its task folders costs ~10 s and loading a 7B model far more, so one process per
encoder keeps the job count proportionate; and evaluating task by task lets one broken
benchmark fail alone: the others are still written and the error names the benchmark, the
task and the cause (the job then fails, so Snakemake reruns only what is missing).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shutil
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vislaw.eval.judge import count_judge_failures, judge_unavailable
from vislaw.eval.lmms_bridge import cli_namespace, lmms_eval_argv, load_lmm, model_args_string
from vislaw.eval.lmms_bridge import task_manager as lmms_task_manager
from vislaw.eval.results import ResultsError, benchmark_rows, read_results
from vislaw.eval.tasks import Benchmark
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


def _reason(err: BaseException) -> str:
    """The root cause in one line (lmms-eval wraps dataset and scoring errors in retries)."""
    inner = err
    last = getattr(err, "last_attempt", None)  # tenacity.RetryError
    if last is not None and last.exception() is not None:
        inner = last.exception()
    return f"{type(inner).__name__}: {inner}".splitlines()[0]


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
    reason (:func:`evaluate_in_process` checks the judge is reachable before the run).
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


@dataclass(frozen=True)
class EvalRequest:
    """One model on several benchmarks, as :func:`vislaw.eval.launch.evaluate_benchmarks` was
    asked: ``outputs[name]`` / ``samples[name]`` receive each benchmark's results JSON and
    samples file; the lmms-eval options; ``model_extra``: more plugin model arguments;
    ``work_dir``: lmms-eval's scratch (default: beside the first output). A record, so that the
    same request runs here or crosses to the ranks of a launch as JSON (:meth:`as_call`)."""

    pretrained: str | Path
    benchmarks: Sequence[Benchmark]
    outputs: Mapping[str, str | Path]
    include_path: str | Path | None
    device: str
    dtype: str
    batch_size: int
    max_new_tokens: int | None
    limit: int | None
    seed: int
    work_dir: str | Path | None
    samples: Mapping[str, str | Path] | None
    model_extra: Mapping[str, Any] | None

    def as_call(self) -> dict[str, Any]:
        """The request as JSON values (paths as strings, benchmarks as records)."""
        return dict(
            pretrained=str(self.pretrained),
            benchmarks=[dataclasses.asdict(b) for b in self.benchmarks],
            outputs={k: str(v) for k, v in self.outputs.items()},
            include_path=str(self.include_path) if self.include_path is not None else None,
            device=self.device,
            dtype=self.dtype,
            batch_size=self.batch_size,
            max_new_tokens=self.max_new_tokens,
            limit=self.limit,
            seed=self.seed,
            work_dir=str(self.work_dir) if self.work_dir else None,
            samples={k: str(v) for k, v in (self.samples or {}).items()},
            model_extra=dict(self.model_extra or {}),
        )

    @classmethod
    def from_call(cls, call: Mapping[str, Any]) -> EvalRequest:
        """The request :meth:`as_call` saved (benchmark records back to Benchmarks)."""
        benchmarks = [
            Benchmark(**{k: tuple(v) if isinstance(v, list) else v for k, v in b.items()})
            for b in call["benchmarks"]
        ]
        return cls(**{**call, "benchmarks": benchmarks})


def evaluate_in_process(request: EvalRequest) -> dict[str, Path]:
    """Evaluate one model on ``request.benchmarks`` in this process (one rank of a launch, or
    the only process): the unjudgeable ones written as not scored before the model loads, then
    each benchmark in turn with the model loaded once. See
    :func:`vislaw.eval.launch.evaluate_benchmarks`, which checks the request and calls this
    (in every rank when several processes share the work).
    """
    pretrained, benchmarks, outputs = request.pretrained, request.benchmarks, request.outputs
    include_path, batch_size, samples = request.include_path, request.batch_size, request.samples
    model_args = model_args_string(
        pretrained, request.device, request.dtype, request.max_new_tokens, request.model_extra
    )
    argv = lmms_eval_argv(
        model_args,
        [b.task for b in benchmarks],
        batch_size,
        request.seed,
        include_path,
        request.limit,
    )
    base_args = cli_namespace(argv)
    manager = lmms_task_manager([b.task for b in benchmarks], include_path, base_args.verbosity)
    _check_tasks_known(benchmarks, manager, include_path)
    written = _write_unjudgeable(benchmarks, outputs, samples)
    benchmarks = [b for b in benchmarks if b.name not in written]
    if not benchmarks:
        return written
    lm = load_lmm(model_args, batch_size)
    work_dir = request.work_dir
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


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))

"""Step ``evaluate``: the stock lmms-eval on one stage-2 model, in one process or one rank per GPU.

:func:`run_evaluate` is what the evaluate rule (workflow_scripts/evaluate.py) and the CLI
(vislaw.eval.cli) call, with the ``eval`` settings; :func:`evaluate_benchmarks` checks the
arguments and runs the evaluation loop (vislaw.eval.task_loop) here, or, with several processes,
in each rank of an ``accelerate launch`` (through the one launcher, :mod:`vislaw.ranks`: the
call saved beside the outputs, :func:`evaluate_rank` in every rank).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vislaw.eval.settings import EvalSettings
from vislaw.eval.task_loop import EvalRequest, evaluate_in_process
from vislaw.eval.tasks import Benchmark

RANK_TARGET = "vislaw.eval.launch:evaluate_rank"  # what each rank of a launch runs


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
    whole document groups (:func:`vislaw.eval.task_loop.task_limit`).

    ``processes`` > 1: the same call under ``accelerate launch`` with that many processes (one
    per GPU of the job; lmms-eval splits every task's questions across them and gathers the
    answers on the main process, which writes the outputs).

    Raises :class:`vislaw.eval.task_loop.EvaluationError` listing every benchmark that failed,
    after writing the others. ``work_dir`` holds lmms-eval's own (timestamped) files while it runs and is removed
    afterwards; by default it sits beside the first output.
    """
    missing = [b.name for b in benchmarks if b.name not in outputs]
    if missing:
        raise ValueError(f"no output path for benchmark(s) {missing}")
    if any(b.local for b in benchmarks) and include_path is None:
        raise ValueError("local benchmarks need include_path (their task folders)")
    request = EvalRequest(
        pretrained,
        benchmarks,
        outputs,
        include_path,
        device,
        dtype,
        batch_size,
        max_new_tokens,
        limit,
        seed,
        work_dir,
        samples,
        model_extra,
    )
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_processes(request, processes)
    return evaluate_in_process(request)


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


def _launch_processes(request: EvalRequest, processes: int) -> dict[str, Path]:
    """Run ``request`` in ``processes`` ranks under ``accelerate launch`` (:mod:`vislaw.ranks`:
    the call saved beside the outputs, :func:`evaluate_rank` in each); the outputs it wrote."""
    from vislaw.ranks import accelerate_command, call_file, rank_program, run_launcher

    call = request.as_call()
    first = Path(next(iter(call["outputs"].values())))
    what = f"accelerate launch of {processes} lmms-eval processes"
    with call_file(RANK_TARGET, call, first.parent, what) as path:
        run_launcher(accelerate_command(rank_program(path), processes), what)
    return {name: Path(path) for name, path in call["outputs"].items()}


def evaluate_rank(**call: Any) -> None:
    """A rank of ``accelerate launch``: the saved request (:meth:`EvalRequest.as_call`)."""
    evaluate_in_process(EvalRequest.from_call(call))

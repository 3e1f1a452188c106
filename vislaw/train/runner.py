"""Run one training stage for one encoder: build, resume, loop, export.

Stage 1 trains the projector with the encoder and LLM frozen (``plain`` captions); stage 2
starts from stage 1's projector and trains projector + LLM (``vicuna_v1`` conversations).
That is the ``llava`` recipe; a recipe (vislaw.train.recipes, e.g. ConvLLaVA's) may split a
stage into phases, each run like a stage here, starting from the previous phase's folder.
The run folder holds ``checkpoints/`` (resumable state every ``save_steps``; a restarted job
continues from the latest one automatically), ``loss.csv`` and, at the end, the stage folder
files of vislaw.vlm.checkpoints. A non-finite loss stops the run with an error naming the step
and samples, before it can reach the weights or a checkpoint.

The steps live beside it, one job each: :mod:`vislaw.train.build` (settings, data, model and
engine), :mod:`vislaw.train.resume` (checkpoints), :mod:`vislaw.train.loop` (the optimizer
steps and loss.csv), :mod:`vislaw.train.export` (the stage folder) and
:mod:`vislaw.train.fingerprint` (what makes two runs the same); this module only sequences
them, phase by phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vislaw.encoders.registry import resolve_encoders
from vislaw.train.build import PhaseInputs, build_engine, deepspeed_config, prepare_run
from vislaw.train.engine import barrier, zero_stage
from vislaw.train.export import export_stage
from vislaw.train.fingerprint import phase_done, phase_fingerprint
from vislaw.train.guard import DivergenceGuard
from vislaw.train.loop import LossLog, StepCallback, run_steps
from vislaw.train.recipes import Phase, check_recipes, phase_settings, stage_phases
from vislaw.train.resume import resume_step
from vislaw.train.settings import StageSettings


def train_phase(
    settings: StageSettings,
    *,
    phase: Phase,
    inputs: PhaseInputs,
    out_dir: str | Path,
    start_dir: str | Path | None = None,
    llm: str | None = None,
    max_steps: int | None = None,
    callbacks: Sequence[StepCallback] = (),
) -> Path:
    """One phase of a stage (see vislaw.train.recipes) into ``out_dir``, with the phase's
    ``settings`` (vislaw.train.recipes.phase_settings) and ``inputs`` (the encoder, data, LLM
    and run folders, :class:`vislaw.train.build.PhaseInputs`), starting from ``start_dir``
    (projector, LLM and trained encoder tensors) or from scratch (None).
    An intermediate phase (``phase.subdir``) whose folder already holds its result is skipped,
    so a restarted job goes on with the next phase."""
    encoder_name = inputs.spec.name
    run = prepare_run(settings, phase, inputs, Path(out_dir), start_dir, llm, max_steps)
    fingerprint = phase_fingerprint(run, Path(inputs.layout.run_dir))
    if phase.subdir and phase_done(run.out_dir, fingerprint):
        print(f"{phase.label} '{encoder_name}': {run.out_dir} is done; skipping")
        return run.out_dir
    ds_config = deepspeed_config(run) if run.use_deepspeed else None
    keep_alive = None  # ZeRO-3: from_pretrained partitions the LLM while this object lives
    if ds_config is not None and zero_stage(ds_config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)
    engine = build_engine(run, ds_config)
    # Scales of the trained weights as the phase starts (before a resume loads a checkpoint).
    guard = DivergenceGuard.start(
        engine.model,
        f"{phase.label} '{encoder_name}'",
        f"Lower {run.settings.key('lr')} (now {run.settings.lr:g}) or check the data.",
    )
    start = resume_step(run.checkpoints, fingerprint, engine, run.dist)
    losses = LossLog(run.out_dir / "loss.csv", start, run.dist.main)
    try:
        last = run_steps(run, engine, start, fingerprint, losses, callbacks, guard)
    finally:
        losses.close()
    export_stage(run, engine, ds_config, last, fingerprint, guard)
    barrier()
    del keep_alive  # kept until the ZeRO-3 weights were gathered for the export
    return run.out_dir


def train_stage(
    config: Mapping[str, Any],
    stage: int,
    encoder_name: str,
    out_dir: str | Path,
    *,
    stage1_dir: str | Path | None = None,
    llm: str | None = None,
    max_steps: int | None = None,
    callbacks: Sequence[StepCallback] = (),
) -> Path:
    """Train ``stage`` for ``encoder_name`` into ``out_dir`` (resuming if it holds a
    checkpoint of the same setting); returns ``out_dir`` once vlm.json is written.

    ``config`` must be schema-checked (defaults filled). Stage 2 needs ``stage1_dir``.
    ``llm`` overrides the config's LLM (stage 2 defaults to the one stage 1 was trained with).
    The encoder's recipe (``train.recipes``/``train.recipe``) may run the stage as several
    phases in sequence (``max_steps`` applies to each). A callback gets ``(StepLog, model)``
    after every optimizer step.
    """
    check_recipes(config, resolve_encoders(config))
    if stage == 2 and stage1_dir is None:
        raise ValueError("stage 2 starts from a stage-1 folder: pass stage1_dir")
    out_dir = Path(out_dir)
    start_dir = Path(stage1_dir) if stage == 2 else None
    for phase in stage_phases(config, stage, encoder_name):
        folder = out_dir / phase.subdir if phase.subdir else out_dir
        train_phase(
            phase_settings(config, phase),
            phase=phase,
            inputs=PhaseInputs.from_config(config, phase.stage, encoder_name),
            out_dir=folder,
            start_dir=start_dir,
            llm=llm,
            max_steps=max_steps,
            callbacks=callbacks,
        )
        start_dir, llm = folder, None  # later phases start from this one (and its LLM)
    return out_dir

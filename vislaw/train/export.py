"""Export a trained phase: the stage folder (vislaw.vlm.checkpoints) and its vlm.json record.

Rank 0 writes it once every weight to export has passed the divergence guard; vlm.json,
written last, marks the folder complete.
"""

from __future__ import annotations

import shutil
from typing import Any

import torch

from vislaw.train.build import TrainRun
from vislaw.train.engine import zero_stage
from vislaw.train.guard import DivergenceGuard
from vislaw.train.loop import StepLog
from vislaw.vlm.checkpoints import LLM_DIR, VlmInfo, llm_reference, write_stage


def export_stage(
    run: TrainRun,
    engine: Any,
    ds_config: dict[str, Any] | None,
    last: StepLog | None,
    fingerprint: str,
    guard: DivergenceGuard,
) -> None:
    """Write the stage folder (rank 0; gathering ZeRO-3 weights involves every rank), after
    checking every weight to export (non-finite or diverged: DivergenceError, no vlm.json)."""
    state = engine.full_state_dict()
    if not run.dist.main:
        return
    guard.check_state(state, last.step if last else None)
    settings, lm, phase = run.settings, engine.model.llm, run.phase
    projector_state = {
        k[len("projector.") :]: v for k, v in state.items() if k.startswith("projector.")
    }
    adapter = LLM_DIR if settings.lora is not None else None  # llm/ holds only the adapter
    if phase.train_llm and adapter is None:
        reference, local = LLM_DIR, True
    else:
        reference, local = llm_reference(run.llm, run.out_dir)
    encoder_state = None
    if run.encoder_keys:  # trained here or in an earlier phase (ConvLLaVA)
        tower = "vision_tower."
        source = {k[len(tower) :]: v for k, v in state.items() if k.startswith(tower)}
        source = source or run.encoder.model.state_dict()
        encoder_state = {k: source[k] for k in sorted(run.encoder_keys)}
    info = VlmInfo.of_parts(
        run.stage,
        run.spec,
        run.encoder,
        lm,
        projector_type=settings.projector,
        template=settings.template,
        llm_ref=reference,
        llm_local=local,
        pad_to_square=settings.pad_to_square,
        max_length=settings.max_length,
        llm_adapter=adapter,
        training={
            "steps": run.total,
            "global_batch": settings.global_batch,
            "lr": settings.lr,
            "world_size": run.dist.world,
            "deepspeed_zero_stage": zero_stage(ds_config) if ds_config else None,
            "final_loss": last.loss if last else None,
            "samples": len(run.dataset),
            "fingerprint": fingerprint,
            "recipe": phase.recipe,
            "phase": phase.name,
            "trainable": _trainable_counts(engine.model),
        },
    )
    if not phase.train_llm:
        write_stage(run.out_dir, info, projector_state, encoder_state=encoder_state)
    else:
        llm_state = {k[len("llm.") :]: v for k, v in state.items() if k.startswith("llm.")}
        write_stage(
            run.out_dir,
            info,
            projector_state,
            lm,
            run.tokenizer,
            llm_state,
            encoder_state=encoder_state,
        )
    if not settings.keep_checkpoints:
        shutil.rmtree(run.checkpoints, ignore_errors=True)


def _trainable_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameter counts per part (ZeRO-3 partitions report their full size)."""
    counts = {"projector": 0, "encoder": 0, "llm": 0}
    part = {"projector": "projector", "vision_tower": "encoder", "llm": "llm"}
    for name, param in model.named_parameters():
        if param.requires_grad:
            key = part.get(name.split(".", 1)[0])
            if key:
                counts[key] += int(getattr(param, "ds_numel", param.numel()))
    return counts

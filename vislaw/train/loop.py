"""The training loop of one phase: optimizer steps, loss.csv, per-step callbacks.

Apart from the build and the export so that what a step does (micro-batches, non-finite loss
check, divergence guard, checkpoint every ``save_steps``) reads in one place.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vislaw.data.llava import LlavaCollator
from vislaw.train.build import TrainRun
from vislaw.train.engine import all_finite, mean_across
from vislaw.train.guard import DivergenceGuard
from vislaw.train.plan import PlanSampler
from vislaw.train.resume import save_checkpoint
from vislaw.vlm.model import LlavaStyleModel, map_pixels

LOSS_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm")


@dataclass(frozen=True)
class StepLog:
    """One finished optimizer step (``step`` counts from 1); a row of loss.csv."""

    step: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    phase: str = ""  # the recipe phase, e.g. "llava.stage1", "convllava.init" (not in loss.csv)


StepCallback = Callable[[StepLog, LlavaStyleModel], None]


def _read_losses(path: Path, upto: int) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open() as handle:
        return [row for row in csv.DictReader(handle) if int(row["step"]) <= upto]


class LossLog:
    """loss.csv, one row per optimizer step; on resume rows after the checkpoint are dropped,
    so the file of a resumed run equals that of an uninterrupted one.

    A streaming writer, not vislaw.io.atomic.write_csv: each step appends and flushes its row
    (the curve can be followed while a days-long stage runs, and a killed job keeps the rows
    up to its last checkpoint); rewriting the whole file atomically every step would be
    quadratic in the steps. vlm.json, written last, marks the stage folder complete."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.enabled = enabled
        self.handle = None
        if not enabled:
            return
        rows = _read_losses(path, resume_step)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = path.open("w", newline="")
        self.writer = csv.DictWriter(self.handle, fieldnames=LOSS_FIELDS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.handle.flush()

    def write(self, log: StepLog) -> None:
        if self.handle is not None:
            self.writer.writerow({f: getattr(log, f) for f in LOSS_FIELDS})
            self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def _to_device(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    return {k: map_pixels(lambda t: t.to(device, non_blocking=True), v) for k, v in batch.items()}


def _accumulate(run: TrainRun, engine: Any, batches: Iterator[dict], step: int) -> list[float]:
    """Forward and backward of the step's micro-batches; their losses. A non-finite loss stops
    the run naming the step, micro-batch and samples."""
    engine.model.train()
    micro_losses = []
    for micro in range(run.accumulation):
        batch = next(batches)
        ids = batch.pop("sample_ids")
        loss = engine.forward(_to_device(batch, engine.device))
        if not all_finite(loss):
            raise FloatingPointError(
                f"{run.phase.label} '{run.encoder_name}': non-finite loss "
                f"({loss.item()}) at step {step + 1}, micro-batch {micro}, samples "
                f"{ids}; lower {run.settings.key('lr')} or check the data. "
                f"Last checkpoint: {run.checkpoints}"
            )
        engine.backward(loss)
        micro_losses.append(float(loss.detach()))
    return micro_losses


def run_steps(
    run: TrainRun,
    engine: Any,
    start: int,
    fingerprint: str,
    losses: LossLog,
    callbacks: Sequence[StepCallback],
    guard: DivergenceGuard,
) -> StepLog | None:
    """Optimizer steps ``start`` .. ``total``; the last step's log. The trained weights are
    checked after every step (``guard``): a non-finite or diverged weight stops the run."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    settings, dist = run.settings, run.dist
    loader = DataLoader(
        run.dataset,
        batch_sampler=PlanSampler(
            run.plan, start, run.total, dist.rank, dist.world, settings.per_device_batch
        ),
        collate_fn=LlavaCollator(run.tokenizer.pad_token_id),
        num_workers=settings.num_workers,
        pin_memory=dist.device.startswith("cuda"),
    )
    batches = iter(loader)
    bar = tqdm(
        total=run.total,
        initial=start,
        desc=f"{run.phase.label} {run.encoder_name}",
        unit="step",
        disable=not dist.main,
    )
    tic, last = time.perf_counter(), None
    try:
        for step in range(start, run.total):
            # Randomness (dropout, if any) from (seed, step, rank): resuming needs no RNG state.
            torch.manual_seed(settings.seed * 1_000_003 + step * dist.world + dist.rank)
            lr = engine.current_lr()
            micro_losses = _accumulate(run, engine, batches, step)
            grad_norm = engine.step()
            guard.check_model(engine.model, step + 1)
            last = StepLog(
                step=step + 1,
                epoch=round((step + 1) / run.plan.steps_per_epoch, 6),
                loss=mean_across(sum(micro_losses) / len(micro_losses), engine.device),
                lr=lr,
                grad_norm=grad_norm,
                phase=run.phase.label,
            )
            losses.write(last)
            rate = settings.global_batch * (step + 1 - start) / (time.perf_counter() - tic)
            bar.set_postfix(loss=f"{last.loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")
            bar.update(1)
            for callback in callbacks:
                callback(last, engine.model)
            if (step + 1) % settings.save_steps == 0 and step + 1 < run.total:
                save_checkpoint(
                    run.checkpoints,
                    step + 1,
                    fingerprint,
                    engine,
                    dist,
                    settings.save_total_limit,
                )
    finally:
        bar.close()
    return last

"""Run one training stage for one encoder: build, resume, loop, export.

Stage 1 trains the projector with the encoder and LLM frozen (``plain`` captions); stage 2
starts from stage 1's projector and trains projector + LLM (``vicuna_v1`` conversations).
That is the ``llava`` recipe; a recipe (vislaw.train.recipes, e.g. ConvLLaVA's) may split a
stage into phases, each run like a stage here, starting from the previous phase's folder.
The run folder holds ``checkpoints/`` (resumable state every ``save_steps``; a restarted job
continues from the latest one automatically), ``loss.csv`` and, at the end, the stage folder
files of vislaw.vlm.checkpoints. A non-finite loss stops the run with an error naming the step
and samples, before it can reach the weights or a checkpoint.
"""

from __future__ import annotations

import csv
import functools
import math
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vislaw.config import ConfigError
from vislaw.data.llava import LlavaCollator, LlavaDataset, read_llava_json
from vislaw.data.settings import DataSettings
from vislaw.encoders.registry import build_encoder, encoder_spec, resolve_encoders
from vislaw.host import pick_device
from vislaw.layout import RunLayout
from vislaw.train.engine import (
    DeepSpeedEngine,
    DistEnv,
    PlainEngine,
    all_finite,
    barrier,
    fill_deepspeed_config,
    init_distributed,
    mean_across,
    read_deepspeed_config,
    zero_stage,
)
from vislaw.train.guard import DivergenceGuard
from vislaw.train.plan import PlanSampler, StepPlan
from vislaw.train.recipes import (
    Phase,
    check_recipes,
    phase_settings,
    stage_phases,
    unfreeze_encoder,
)
from vislaw.train.settings import LoraSettings, StageSettings, llm_source, stage_data
from vislaw.vlm.chat_templates import resolve_template
from vislaw.vlm.checkpoints import (
    INFO_FILE,
    LLM_DIR,
    PROJECTOR_FILE,
    VlmInfo,
    check_feature_match,
    llm_reference,
    load_projector,
    prepare_tokenizer,
    read_encoder_weights,
    spec_to_dict,
    write_stage,
)
from vislaw.vlm.lora import with_lora
from vislaw.vlm.model import LlavaStyleModel, map_pixels, preprocess_images
from vislaw.vlm.projector import build_projector

LOSS_FIELDS = ("step", "epoch", "loss", "lr", "grad_norm")
CHECKPOINTS = "checkpoints"
FINGERPRINT = "fingerprint"


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


def _use_deepspeed(settings: StageSettings, device: str) -> bool:
    if settings.use_deepspeed == "never" or not settings.deepspeed:
        return False
    return settings.use_deepspeed == "always" or device.startswith("cuda")


def _optimizer(model: torch.nn.Module, settings: StageSettings) -> torch.optim.Optimizer:
    """AdamW; with weight decay, biases and norms are exempt as in the HF Trainer."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 over ``warmup`` steps, then cosine decay to 0 at ``total`` (the
    HF Trainer's ``cosine`` schedule that LLaVA uses; written out here because importing
    ``transformers.optimization`` costs seconds per job)."""

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


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


def _resume_step(root: Path, fingerprint: str, engine: Any, dist: DistEnv) -> int:
    """Load the latest checkpoint of this very run (same fingerprint) and return its step;
    checkpoints of a different setting are discarded so the run starts over."""
    latest = root / "latest"
    if not latest.is_file():
        return 0
    stored = (root / FINGERPRINT).read_text().strip() if (root / FINGERPRINT).is_file() else ""
    if stored != fingerprint:
        print(f"checkpoints in {root} belong to a different setting; starting from step 0")
        barrier()
        if dist.main:
            shutil.rmtree(root)
        barrier()
        return 0
    tag = latest.read_text().strip()
    if not (root / tag).is_dir():
        raise FileNotFoundError(f"{latest} names {tag}, which is missing; delete {root} to restart")
    client = engine.load(root, tag)
    step = int(client["step"])
    print(f"resumed from {root / tag} at step {step}")
    return step


def _save_checkpoint(
    root: Path, step: int, fingerprint: str, engine: Any, dist: DistEnv, keep: int
) -> None:
    from vislaw.io.atomic import write_text_atomic

    if dist.main:
        root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / FINGERPRINT, fingerprint)
    barrier()
    engine.save(root, f"step-{step:08d}", {"step": step, "fingerprint": fingerprint})
    barrier()
    if dist.main:
        tags = sorted(p for p in root.glob("step-*") if p.is_dir())
        for old in tags[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _to_device(batch: Mapping[str, Any], device: str) -> dict[str, Any]:
    return {k: map_pixels(lambda t: t.to(device, non_blocking=True), v) for k, v in batch.items()}


@dataclass
class _Run:
    """What the phases of one stage run share."""

    stage: int
    encoder_name: str
    out_dir: Path
    settings: StageSettings
    spec: Any
    dist: DistEnv
    accumulation: int
    dtype: torch.dtype
    use_deepspeed: bool
    llm: str
    encoder: Any
    tokenizer: Any
    dataset: LlavaDataset
    plan: StepPlan
    total: int
    json_path: Path
    start_dir: Path | None  # the folder this run starts from (stage 2: the stage-1 folder)
    phase: Phase
    # Encoder tensors that differ from the spec's: loaded from start_dir or trained here.
    encoder_keys: set[str]

    @property
    def checkpoints(self) -> Path:
        return self.out_dir / CHECKPOINTS


def _subset(records: list, max_samples: int | None, seed: int) -> list:
    """A seeded subset of ``max_samples`` records, in file order (all when None or more)."""
    if max_samples is None or max_samples >= len(records):
        return records
    keep = np.sort(np.random.default_rng(seed).choice(len(records), max_samples, replace=False))
    return [records[i] for i in keep]


def _prepare(
    config: Mapping[str, Any],
    phase: Phase,
    encoder_name: str,
    out_dir: Path,
    start_dir: str | Path | None,
    llm: str | None,
    max_steps: int | None,
) -> _Run:
    """Settings, processes, encoder, tokenizer, data and schedule (no LLM loaded yet)."""
    from transformers import AutoTokenizer

    stage = phase.stage
    settings = phase_settings(config, phase)
    spec = encoder_spec(resolve_encoders(config), encoder_name)
    device = pick_device(config)
    use_ds = _use_deepspeed(settings, device)
    dist = init_distributed(use_ds, device)
    dtype = torch.bfloat16 if (use_ds and settings.bf16) else torch.float32
    if stage == 2 and start_dir is None:
        raise ValueError("stage 2 starts from a stage-1 folder: pass stage1_dir")
    if start_dir is not None:  # it must record this encoder (vislaw.io.provenance)
        VlmInfo.read(start_dir).check_encoder(spec, start_dir)
        llm = llm or VlmInfo.read(start_dir).llm_source(start_dir)
    llm = llm or llm_source(config)
    # Built before any ZeRO-3 config exists, so a real encoder's from_pretrained is not
    # partitioned (a frozen encoder lives outside the DeepSpeed engine).
    encoder = build_encoder(spec, device=dist.device, dtype=dtype)
    trained = read_encoder_weights(start_dir) if start_dir is not None else {}
    if trained:  # the encoder an earlier phase trained (ConvLLaVA)
        encoder.load_trained(trained, source=f"{start_dir}")
    if start_dir is not None:  # its projector must get the features it was trained on
        check_feature_match(VlmInfo.read(start_dir), spec, start_dir, encoder.channels)
    rows, cols = encoder.grid
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(llm))
    template = resolve_template(settings.template, tokenizer, str(llm), settings.key("template"))
    json_path, image_folder = stage_data(config, stage)
    dataset = LlavaDataset(
        _subset(read_llava_json(json_path), settings.max_samples, settings.seed),
        image_folder,
        tokenizer,
        template,
        functools.partial(preprocess_images, encoder, pad_to_square=settings.pad_to_square),
        image_tokens=rows * cols,
        max_length=settings.max_length,
        source=json_path,
        max_pixels=DataSettings.from_config(config).max_image_pixels,
    )
    if len(dataset) < settings.global_batch:
        raise ConfigError(
            settings.key("global_batch"),
            f"{settings.global_batch} is more than the {len(dataset)} samples of {json_path}",
        )
    lengths = dataset.modality_lengths() if settings.group_by_modality_length else None
    plan = StepPlan(len(dataset), settings.global_batch, settings.seed, lengths)
    return _Run(
        stage=stage,
        encoder_name=encoder_name,
        out_dir=out_dir,
        settings=settings,
        spec=spec,
        dist=dist,
        accumulation=settings.accumulation(dist.world),
        dtype=dtype,
        use_deepspeed=use_ds,
        llm=llm,
        encoder=encoder,
        tokenizer=tokenizer,
        dataset=dataset,
        plan=plan,
        total=max_steps or settings.max_steps or settings.epochs * plan.steps_per_epoch,
        json_path=json_path,
        start_dir=Path(start_dir) if start_dir is not None else None,
        phase=phase,
        encoder_keys=set(trained),
    )


def _deepspeed_config(run: _Run) -> dict[str, Any]:
    from transformers import AutoConfig

    path = run.settings.deepspeed_path()
    return fill_deepspeed_config(
        read_deepspeed_config(path),
        micro_batch=run.settings.per_device_batch,
        accumulation=run.accumulation,
        world=run.dist.world,
        max_grad_norm=run.settings.max_grad_norm,
        bf16=run.settings.bf16,
        hidden_size=int(AutoConfig.from_pretrained(run.llm).hidden_size),
        source=str(path),
    )


def _build_engine(run: _Run, ds_config: dict[str, Any] | None) -> Any:
    """LLM + projector + optimizer + schedule behind the engine (DeepSpeed or plain)."""
    from transformers import AutoModelForCausalLM

    settings, phase = run.settings, run.phase
    lm = AutoModelForCausalLM.from_pretrained(run.llm, dtype=run.dtype)
    if run.start_dir is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            width = lm.config.hidden_size
            projector = build_projector(settings.projector, run.encoder.channels, width)
    else:
        projector, kind = load_projector(
            run.start_dir / PROJECTOR_FILE, VlmInfo.read(run.start_dir)
        )
        if kind != settings.projector:
            raise ValueError(
                f"{run.start_dir}: projector is {kind}, config says {settings.projector}"
            )
    train_encoder = phase.encoder_from_stage is not None
    lora = _lora(run)
    if lora is not None:  # base weights frozen, only the adapters (and projector) train
        with torch.random.fork_rng(devices=[]):  # seeded adapter init: runs are reproducible
            torch.manual_seed(settings.seed)
            lm = with_lora(lm, lora)
    else:
        lm.requires_grad_(phase.train_llm)
    model = LlavaStyleModel(run.encoder, projector.to(run.dtype), lm, train_encoder=train_encoder)
    projector.requires_grad_(True)
    if train_encoder:
        run.encoder_keys |= set(unfreeze_encoder(run.encoder, phase.encoder_from_stage))
    if settings.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    optimizer = _optimizer(model, settings)
    warmup = math.ceil(settings.warmup_ratio * run.total)
    scheduler = cosine_with_warmup(optimizer, warmup, run.total)
    if ds_config is not None:
        return DeepSpeedEngine(model, optimizer, scheduler, ds_config)
    bf16 = settings.bf16 and run.dist.device.startswith("cuda")
    return PlainEngine(
        model,
        optimizer,
        scheduler,
        run.accumulation,
        settings.max_grad_norm,
        run.dist.device,
        bf16,
    )


def _lora(run: _Run) -> LoraSettings | None:
    """The phase's LoRA settings; only a phase that trains the LLM can use them."""
    lora = run.settings.lora_settings()
    if lora is not None and not run.phase.train_llm:
        raise ConfigError(run.settings.key("lora"), "LoRA needs a phase that trains the LLM")
    return lora


def _accumulate(run: _Run, engine: Any, batches: Iterator[dict], step: int) -> list[float]:
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


def _run_steps(
    run: _Run,
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
                _save_checkpoint(
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


def _export(
    run: _Run,
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


def _fingerprint(run: _Run, run_dir: Path) -> str:
    """What determines a phase's result. It names no absolute path of the run's own files, so
    a moved or copied results tree resumes its checkpoints: files under ``run_dir`` (the tiny
    LLM, the demo's data) by their path relative to it, the start folder by its content (its
    projector's hash and its recorded fingerprint), not by where it lies."""
    extra: dict[str, Any] = {}
    if run.phase.recipe != "llava":
        start_print = None
        if run.start_dir is not None:
            start_print = VlmInfo.read(run.start_dir).training.get("fingerprint")
        extra = {
            "phase": run.phase.label,
            "encoder_from_stage": run.phase.encoder_from_stage,
            "train_llm": run.phase.train_llm,
            "start_fingerprint": start_print,  # a retrained earlier phase invalidates this one
        }
    return run.settings.fingerprint(
        encoder=spec_to_dict(run.spec),
        llm=_run_relative(run.llm, run_dir),
        data=_run_relative(run.json_path, run_dir),
        world=run.dist.world,
        total=run.total,
        stage1=_folder_identity(run.start_dir),
        **extra,
    )


def _run_relative(path: str | Path, run_dir: Path) -> str:
    """``path`` relative to the run folder when it lies inside it, else absolute; a Hub id
    (no such file or folder here) as given."""
    if not Path(path).exists():
        return str(path)
    resolved = Path(path).resolve()
    if resolved.is_relative_to(run_dir.resolve()):
        return resolved.relative_to(run_dir.resolve()).as_posix()
    return str(resolved)


def _folder_identity(folder: Path | None) -> dict[str, Any] | None:
    """A start folder by content: the sha256 of its projector (what the phase starts from)
    and the fingerprint its vlm.json records (None: no start folder)."""
    if folder is None:
        return None
    import hashlib

    digest = hashlib.sha256((Path(folder) / PROJECTOR_FILE).read_bytes()).hexdigest()
    return {
        "projector_sha256": digest,
        "fingerprint": VlmInfo.read(folder).training.get("fingerprint"),
    }


def _finished(folder: Path, fingerprint: str) -> bool:
    """Whether ``folder`` already holds this very phase's result (same fingerprint)."""
    if not (folder / INFO_FILE).is_file():
        return False
    return VlmInfo.read(folder).training.get("fingerprint") == fingerprint


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


def train_phase(
    config: Mapping[str, Any],
    phase: Phase,
    encoder_name: str,
    out_dir: str | Path,
    *,
    start_dir: str | Path | None = None,
    llm: str | None = None,
    max_steps: int | None = None,
    callbacks: Sequence[StepCallback] = (),
) -> Path:
    """One phase of a stage (see vislaw.train.recipes) into ``out_dir``, starting from
    ``start_dir`` (projector, LLM and trained encoder tensors) or from scratch (None).
    An intermediate phase (``phase.subdir``) whose folder already holds its result is skipped,
    so a restarted job goes on with the next phase."""
    run = _prepare(config, phase, encoder_name, Path(out_dir), start_dir, llm, max_steps)
    fingerprint = _fingerprint(run, Path(RunLayout.from_config(config).run_dir))
    if phase.subdir and _finished(run.out_dir, fingerprint):
        print(f"{phase.label} '{encoder_name}': {run.out_dir} is done; skipping")
        return run.out_dir
    ds_config = _deepspeed_config(run) if run.use_deepspeed else None
    keep_alive = None  # ZeRO-3: from_pretrained partitions the LLM while this object lives
    if ds_config is not None and zero_stage(ds_config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)
    engine = _build_engine(run, ds_config)
    # Scales of the trained weights as the phase starts (before a resume loads a checkpoint).
    guard = DivergenceGuard.start(
        engine.model,
        f"{phase.label} '{encoder_name}'",
        f"Lower {run.settings.key('lr')} (now {run.settings.lr:g}) or check the data.",
    )
    start = _resume_step(run.checkpoints, fingerprint, engine, run.dist)
    losses = LossLog(run.out_dir / "loss.csv", start, run.dist.main)
    try:
        last = _run_steps(run, engine, start, fingerprint, losses, callbacks, guard)
    finally:
        losses.close()
    _export(run, engine, ds_config, last, fingerprint, guard)
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
            config,
            phase,
            encoder_name,
            folder,
            start_dir=start_dir,
            llm=llm,
            max_steps=max_steps,
            callbacks=callbacks,
        )
        start_dir, llm = folder, None  # later phases start from this one (and its LLM)
    return out_dir

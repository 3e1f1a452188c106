"""Build one training phase: settings, processes, encoder, tokenizer, data, schedule, engine.

Everything a phase needs before its first step, gathered in :class:`TrainRun`; the LLM and
projector are loaded only in :func:`build_engine`, after a ZeRO-3 config may exist, so that
DeepSpeed partitions them as they load.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vislaw.config import ConfigError
from vislaw.data.llava import LlavaDataset, read_llava_json
from vislaw.data.settings import DataSettings
from vislaw.encoders.registry import build_encoder, encoder_spec, resolve_encoders
from vislaw.host import pick_device
from vislaw.layout import RunLayout
from vislaw.train.engine import (
    DeepSpeedEngine,
    DistEnv,
    PlainEngine,
    fill_deepspeed_config,
    init_distributed,
    read_deepspeed_config,
)
from vislaw.train.plan import StepPlan
from vislaw.train.recipes import Phase, unfreeze_encoder
from vislaw.train.settings import LlmSettings, LoraSettings, StageSettings, stage_data
from vislaw.vlm.chat_templates import resolve_template
from vislaw.vlm.checkpoints import (
    PROJECTOR_FILE,
    VlmInfo,
    check_feature_match,
    load_projector,
    prepare_tokenizer,
    read_encoder_weights,
)
from vislaw.vlm.lora import with_lora
from vislaw.vlm.model import LlavaStyleModel, preprocess_images
from vislaw.vlm.projector import build_projector

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec

CHECKPOINTS = "checkpoints"  # the run folder's resumable state (vislaw.train.resume)


@dataclass(frozen=True)
class PhaseInputs:
    """What a training phase reads besides its settings, taken from the checked config once:
    the encoder's spec, the stage's LLaVA JSON and image folder (``json_path``,
    ``image_folder``), the image size cap, the LLM settings, the run's folders (``layout``: the
    tiny LLM, and the run folder the fingerprint's paths are relative to) and the device. A
    record, so that a phase takes typed values rather than the whole config."""

    spec: EncoderSpec
    json_path: Path
    image_folder: Path
    max_image_pixels: int | None
    llm: LlmSettings
    layout: RunLayout
    device: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stage: int, encoder_name: str) -> PhaseInputs:
        """The inputs of ``encoder_name``'s stage ``stage`` in a checked config (ConfigError
        naming the key for an encoder or stage data the config lacks)."""
        spec = encoder_spec(resolve_encoders(config), encoder_name)
        device = pick_device(config)
        json_path, image_folder = stage_data(config, stage)
        return cls(
            spec=spec,
            json_path=json_path,
            image_folder=image_folder,
            max_image_pixels=DataSettings.from_config(config).max_image_pixels,
            llm=LlmSettings.from_config(config),
            layout=RunLayout.from_config(config),
            device=device,
        )


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


@dataclass
class TrainRun:
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


def prepare_run(
    settings: StageSettings,
    phase: Phase,
    inputs: PhaseInputs,
    out_dir: Path,
    start_dir: str | Path | None,
    llm: str | None,
    max_steps: int | None,
) -> TrainRun:
    """Processes, encoder, tokenizer, data and schedule for the phase's ``settings`` (no LLM
    loaded yet)."""
    from transformers import AutoTokenizer

    stage = phase.stage
    spec, device = inputs.spec, inputs.device
    encoder_name = spec.name
    use_ds = _use_deepspeed(settings, device)
    dist = init_distributed(use_ds, device)
    dtype = torch.bfloat16 if (use_ds and settings.bf16) else torch.float32
    if stage == 2 and start_dir is None:
        raise ValueError("stage 2 starts from a stage-1 folder: pass stage1_dir")
    if start_dir is not None:  # it must record this encoder (vislaw.io.provenance)
        VlmInfo.read(start_dir).check_encoder(spec, start_dir)
        llm = llm or VlmInfo.read(start_dir).llm_source(start_dir)
    llm = llm or inputs.llm.source_in(inputs.layout)
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
    json_path, image_folder = inputs.json_path, inputs.image_folder
    dataset = LlavaDataset(
        _subset(read_llava_json(json_path), settings.max_samples, settings.seed),
        image_folder,
        tokenizer,
        template,
        functools.partial(preprocess_images, encoder, pad_to_square=settings.pad_to_square),
        image_tokens=rows * cols,
        max_length=settings.max_length,
        source=json_path,
        max_pixels=inputs.max_image_pixels,
    )
    if len(dataset) < settings.global_batch:
        raise ConfigError(
            settings.key("global_batch"),
            f"{settings.global_batch} is more than the {len(dataset)} samples of {json_path}",
        )
    lengths = dataset.modality_lengths() if settings.group_by_modality_length else None
    plan = StepPlan(len(dataset), settings.global_batch, settings.seed, lengths)
    return TrainRun(
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


def deepspeed_config(run: TrainRun) -> dict[str, Any]:
    """The DeepSpeed JSON the stage names, filled for this run (batch, world, precision, the
    LLM's width): read before the LLM loads, since ZeRO-3 must partition it as it loads."""
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


def build_engine(run: TrainRun, ds_config: dict[str, Any] | None) -> Any:
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


def _lora(run: TrainRun) -> LoraSettings | None:
    """The phase's LoRA settings; only a phase that trains the LLM can use them."""
    lora = run.settings.lora_settings()
    if lora is not None and not run.phase.train_llm:
        raise ConfigError(run.settings.key("lora"), "LoRA needs a phase that trains the LLM")
    return lora

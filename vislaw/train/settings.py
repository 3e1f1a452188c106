"""One stage's training settings, read from the checked config's ``train:`` block.

The batch arithmetic lives here: the config gives the global batch (LLaVA-1.5: 256 for stage 1,
128 for stage 2) and the per-device batch; accumulation = global / (per-device x world size),
so the same config trains identically on 1, 4 or 8 GPUs (or the CPU).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from vislaw.config import ConfigError
from vislaw.layout import RunLayout, under_data_root
from vislaw.sections import Section

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_KEYS = {1: "pretrain", 2: "instruct"}


@dataclass(frozen=True)
class LlmSettings(Section):
    """``llm:``: the LLM every stage starts from (a hub id/folder, or the tiny demo LLM)."""

    SECTION: ClassVar[str] = "llm"
    model_id: str | None
    tiny: bool | Mapping[str, Any]

    def source(self, config: Mapping[str, Any]) -> str:
        """The LLM to load: the tiny demo LLM's folder (rule tiny_llm) or the hub id/folder."""
        return self.source_in(RunLayout.from_config(config))

    def source_in(self, layout: RunLayout) -> str:
        """:meth:`source` for the run whose folders ``layout`` names."""
        if self.tiny:
            return layout.llm_dir
        if not self.model_id:
            raise ConfigError("llm", "set model_id (hub id or folder) or tiny")
        return self.model_id

    def tiny_overrides(self) -> dict[str, Any]:
        """``llm.tiny``'s architecture overrides (``tiny: true``: none)."""
        return dict(self.tiny) if isinstance(self.tiny, Mapping) else {}


@dataclass(frozen=True)
class LoraSettings(Section):
    """``train.stage2.lora`` (peft LoRA on the LLM). The stage's ``lora`` key may be null, so
    it is kept as a mapping there and read into this model by :meth:`from_stage`."""

    SECTION: ClassVar[str] = ""
    r: int
    alpha: float
    dropout: float
    targets: str | tuple[str, ...]

    @classmethod
    def from_stage(cls, lora: Mapping[str, Any] | None, key: str) -> LoraSettings | None:
        return None if lora is None else cls.from_mapping(lora, key)


@dataclass(frozen=True)
class StageKeys:
    """The keys ``train.stage1`` and ``train.stage2`` share (a field list, not a model: the
    section models and the flat per-stage view :class:`StageSettings` both take it)."""

    template: str
    lr: float
    epochs: int
    max_steps: int | None
    per_device_batch: int
    global_batch: int
    warmup_ratio: float
    weight_decay: float
    save_steps: int
    max_samples: int | None
    deepspeed: str | None
    group_by_modality_length: bool


@dataclass(frozen=True)
class TrainKeys:
    """The ``train`` keys both stages use (errors name them ``train.<key>``)."""

    projector: str
    max_length: int
    bf16: bool
    gradient_checkpointing: bool
    pad_to_square: bool
    num_workers: int
    max_grad_norm: float
    use_deepspeed: str
    save_total_limit: int
    keep_checkpoints: bool


@dataclass(frozen=True)
class StageSection(StageKeys, Section):
    """``train.stage1`` / ``train.stage2``."""


@dataclass(frozen=True)
class Stage1Section(StageSection):
    SECTION: ClassVar[str] = "train.stage1"


@dataclass(frozen=True)
class Stage2Section(StageSection):
    SECTION: ClassVar[str] = "train.stage2"
    lora: Mapping[str, Any] | None


@dataclass(frozen=True)
class ConvllavaSection(Section):
    """``train.convllava``; ``init``/``pretrain`` are partial overrides of ``train.stage1``
    (unset keys inherit), so they stay mappings (vislaw.train.recipes applies them)."""

    SECTION: ClassVar[str] = "train.convllava"
    unfreeze_from_stage: int
    init: Mapping[str, Any]
    pretrain: Mapping[str, Any]


@dataclass(frozen=True)
class TrainSettings(TrainKeys, Section):
    """``train:`` (the LLaVA-1.5 recipe, docs/training.md): keys common to both stages, the
    recipe choice and the per-stage sections. :class:`StageSettings` is one stage's view."""

    SECTION: ClassVar[str] = "train"
    recipe: str
    recipes: Mapping[str, str]
    convllava: ConvllavaSection
    stage1: Stage1Section
    stage2: Stage2Section

    def stage(self, stage: int) -> StageSection:
        if stage not in DATA_KEYS:
            raise ValueError(f"stage must be 1 or 2, not {stage!r}")
        return self.stage1 if stage == 1 else self.stage2


@dataclass(frozen=True)
class StageSettings(TrainKeys, StageKeys):
    """One stage's resolved settings: ``train``'s common keys plus ``train.stage<N>`` (and a
    recipe phase's overrides, vislaw.train.recipes), with the run's seed."""

    stage: int
    seed: int
    # LoRA on the LLM (train.stage2.lora: r, alpha, dropout, targets); None: full finetuning
    lora: Mapping[str, Any] | None = None
    # A recipe phase's overrides (e.g. train.convllava.pretrain): where those values came from,
    # so errors name the key the user wrote. Not part of the fingerprint (the values are).
    section: str | None = None
    overridden: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stage: int) -> StageSettings:
        """Settings of ``stage`` (1 or 2) from a schema-checked config (defaults filled)."""
        return cls.from_train(TrainSettings.from_config(config), stage, int(config["seed"]))

    @classmethod
    def from_train(cls, train: TrainSettings, stage: int, seed: int) -> StageSettings:
        """One stage's view of the ``train`` model: the common keys plus ``train.stage<N>``."""
        per_stage = train.stage(stage)
        common = {f.name: getattr(train, f.name) for f in fields(TrainKeys)}
        own = {f.name: getattr(per_stage, f.name) for f in per_stage.config_fields()}
        if "lora" in own and own["lora"] is not None:
            own["lora"] = dict(own["lora"])
        settings = cls(stage=stage, seed=seed, **common, **own)
        from vislaw.vlm.chat_templates import template_names

        if settings.template not in template_names():
            raise ConfigError(
                f"train.stage{stage}.template",
                f"unknown template {settings.template!r}; known: {template_names()}",
            )
        return settings

    def lora_settings(self) -> LoraSettings | None:
        """The stage's LoRA model (None: full finetuning)."""
        return LoraSettings.from_stage(self.lora, self.key("lora"))

    def key(self, name: str) -> str:
        """The dotted config key of a setting, for error messages."""
        if self.section and name in self.overridden:
            return f"{self.section}.{name}"
        common = {f.name for f in fields(TrainKeys)}
        return f"train.{name}" if name in common else f"train.stage{self.stage}.{name}"

    def accumulation(self, world_size: int) -> int:
        """Gradient-accumulation steps giving ``global_batch`` on ``world_size`` processes."""
        per_step = self.per_device_batch * world_size
        if self.global_batch % per_step:
            raise ConfigError(
                self.key("global_batch"),
                f"{self.global_batch} is not a multiple of per_device_batch "
                f"({self.per_device_batch}) x world size ({world_size})",
            )
        return self.global_batch // per_step

    def deepspeed_path(self) -> Path | None:
        """The stage's DeepSpeed JSON: as given, else relative to the repository root."""
        if not self.deepspeed:
            return None
        path = Path(self.deepspeed)
        for candidate in (path, REPO_ROOT / path):
            if candidate.is_file():
                return candidate
        raise ConfigError(self.key("deepspeed"), f"file not found: {self.deepspeed}")

    def fingerprint(self, **extra: Any) -> str:
        """Hash of what determines the result (not save/worker settings): resuming from a
        checkpoint made under another fingerprint would mix two runs."""
        data = asdict(self)
        for name in ("save_steps", "num_workers", "save_total_limit", "keep_checkpoints"):
            data.pop(name)
        data.pop("section")
        data.pop("overridden")
        for name in ("max_samples", "lora"):  # fingerprints from before these keys stay valid
            if data[name] is None:
                data.pop(name)
        data.update(extra)
        blob = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def stage_data(config: Mapping[str, Any], stage: int) -> tuple[Path, Path]:
    """(LLaVA JSON, image folder) of a stage; relative paths resolve against ``data.root``."""
    key = DATA_KEYS[stage]
    data = config["data"]
    if key not in data:
        raise ConfigError(f"data.{key}", f"stage {stage} needs its LLaVA JSON and image folder")
    return under_data_root(config, data[key]["json"]), under_data_root(
        config, data[key]["image_folder"]
    )


def llm_source(config: Mapping[str, Any]) -> str:
    """The LLM to load (see :meth:`LlmSettings.source`)."""
    return LlmSettings.from_config(config).source(config)

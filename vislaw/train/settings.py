"""One stage's training settings, read from the checked config's ``train:`` block.

The batch arithmetic lives here: the config gives the global batch (LLaVA-1.5: 256 for stage 1,
128 for stage 2) and the per-device batch; accumulation = global / (per-device x world size),
so the same config trains identically on 1, 4 or 8 GPUs (or the CPU).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vislaw.config import ConfigError
from vislaw.layout import RunLayout, under_data_root

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_KEYS = {1: "pretrain", 2: "instruct"}


@dataclass(frozen=True)
class StageSettings:
    stage: int
    template: str
    lr: float
    epochs: int
    max_steps: int | None
    per_device_batch: int
    global_batch: int
    warmup_ratio: float
    weight_decay: float
    save_steps: int
    deepspeed: str | None
    group_by_modality_length: bool
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
    seed: int
    # a seeded subset of the stage's samples (a pilot run); None: all of them
    max_samples: int | None = None
    # LoRA on the LLM (train.stage2.lora: r, alpha, dropout, targets); None: full finetuning
    lora: Mapping[str, Any] | None = None
    # A recipe phase's overrides (e.g. train.convllava.pretrain): where those values came from,
    # so errors name the key the user wrote. Not part of the fingerprint (the values are).
    section: str | None = None
    overridden: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], stage: int) -> StageSettings:
        """Settings of ``stage`` (1 or 2) from a schema-checked config (defaults filled)."""
        if stage not in DATA_KEYS:
            raise ValueError(f"stage must be 1 or 2, not {stage!r}")
        train = dict(config["train"])
        per_stage = train.pop(f"stage{stage}")
        train.pop(f"stage{3 - stage}", None)
        for key in ("recipe", "recipes", "convllava"):  # vislaw.train.recipes reads these
            train.pop(key, None)
        settings = cls(stage=stage, seed=int(config.get("seed", 0)), **train, **per_stage)
        from vislaw.vlm.templates import TEMPLATES

        if settings.template not in TEMPLATES:
            raise ConfigError(
                f"train.stage{stage}.template",
                f"unknown template {settings.template!r}; known: {sorted(TEMPLATES)}",
            )
        return settings

    def key(self, name: str) -> str:
        """The dotted config key of a setting, for error messages."""
        if self.section and name in self.overridden:
            return f"{self.section}.{name}"
        common = {
            "projector",
            "max_length",
            "bf16",
            "gradient_checkpointing",
            "pad_to_square",
            "num_workers",
            "max_grad_norm",
            "use_deepspeed",
            "save_total_limit",
            "keep_checkpoints",
        }
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
    """The LLM to load: the tiny demo LLM's folder (rule tiny_llm) or the hub id/folder."""
    llm = config["llm"]
    if llm.get("tiny"):
        return str(Path(RunLayout.from_config(config).llm_dir))
    if not llm.get("model_id"):
        raise ConfigError("llm", "set model_id (hub id or folder) or tiny")
    return llm["model_id"]


def tiny_llm_overrides(config: Mapping[str, Any]) -> dict[str, Any]:
    tiny = config["llm"].get("tiny")
    return dict(tiny) if isinstance(tiny, Mapping) else {}

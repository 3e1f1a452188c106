"""Two interchangeable optimisation back ends behind one small interface.

``PlainEngine`` is single-process PyTorch (the CPU demo and tests; optional bf16 autocast).
``DeepSpeedEngine`` wraps ``deepspeed.initialize`` (ZeRO-2 for stage 1, ZeRO-3 for stage 2 in
the shipped configs) for GPUs, and also runs on the CPU for tests. Both expose
``forward(batch) -> loss``, ``backward(loss)``, ``step() -> grad norm`` once per global batch,
``save``/``load`` of resumable state (trainable weights, optimizer, scheduler; frozen weights
are never written), and ``full_state_dict()`` for the final export.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vislaw.io.ports import free_port

AUTO = "auto"


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world: int
    local_rank: int
    device: str

    @property
    def main(self) -> bool:
        return self.rank == 0


def _skip_cpu_shm_kernel() -> None:
    """On the CPU, DeepSpeed's process group JIT-compiles a shared-memory all-reduce kernel
    (minutes on a busy machine, and again for every checkout path, since the include paths
    change); gloo does the same reductions, so the CPU ranks use gloo alone."""
    import deepspeed.comm.torch as ds_torch

    ds_torch.build_shm_op = lambda: None


def init_distributed(use_deepspeed: bool, device: str) -> DistEnv:
    """Rank and device from torchrun/deepspeed's environment (single process without it).

    DeepSpeed always needs a process group: a lone process gets a one-member group on a free
    local port, so the same code path runs under ``python`` and under ``torchrun``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not use_deepspeed:
        raise RuntimeError(
            f"{world} processes need DeepSpeed: set train.use_deepspeed to auto or always"
        )
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if use_deepspeed:
        import deepspeed

        if not torch.distributed.is_initialized():
            if not device.startswith("cuda"):
                _skip_cpu_shm_kernel()
            os.environ.setdefault("RANK", str(rank))
            os.environ.setdefault("WORLD_SIZE", str(world))
            os.environ.setdefault("LOCAL_RANK", str(local_rank))
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(free_port()))
            deepspeed.init_distributed(verbose=False)
    return DistEnv(rank, world, local_rank, device)


def close_distributed() -> None:
    """Leave the process group once every rank is done (a no-op in a lone process).

    A rank that exits with its gloo group still alive can abort in the C++ teardown
    ("terminate called without an active exception", SIGABRT) after its work is finished, and
    torchrun then reports the whole run as failed; the entry points call this last.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every process (so all ranks stop together)."""
    flag = torch.isfinite(value.detach()).all().float()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item() > 0)


def mean_across(value: float, device: str) -> float:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        tensor = torch.tensor([value], device=device)
        torch.distributed.all_reduce(tensor)
        return float(tensor.item()) / torch.distributed.get_world_size()
    return value


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


# ---- DeepSpeed configuration ------------------------------------------------------------------
def fill_deepspeed_config(
    config: Mapping[str, Any],
    *,
    micro_batch: int,
    accumulation: int,
    world: int,
    max_grad_norm: float,
    bf16: bool,
    hidden_size: int,
    source: str = "deepspeed config",
) -> dict[str, Any]:
    """Replace ``"auto"`` values with transformers' own filler (``HfTrainerDeepSpeedConfig``,
    what ``Trainer`` uses: batch sizes, clipping, precision, hidden-size-based ZeRO buckets);
    a fixed batch value that contradicts the training config is an error rather than a silent
    change of the recipe. We train without ``Trainer``, so its ``trainer_config_process``
    (which reads ``TrainingArguments``) is replaced by the explicit values below."""
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    # A copy: the filler edits the dict in place. The object registers itself as the
    # process's DeepSpeed config (a weak reference), which dies with it on return.
    filler = HfTrainerDeepSpeedConfig(copy.deepcopy(dict(config)))
    filler.fill_match("train_micro_batch_size_per_gpu", micro_batch, "per_device_batch")
    filler.fill_match("gradient_accumulation_steps", accumulation, "accumulation")
    filler.fill_match("train_batch_size", micro_batch * accumulation * world, "global_batch")
    filler.fill_only("gradient_clipping", max_grad_norm)
    filler.fill_only("bf16.enabled", bf16)
    filler.fill_only("fp16.enabled", False)
    filler.fill_only("zero_optimization.reduce_bucket_size", hidden_size * hidden_size)
    filler.fill_only("zero_optimization.stage3_prefetch_bucket_size", int(0.9 * hidden_size**2))
    filler.fill_only("zero_optimization.stage3_param_persistence_threshold", 10 * hidden_size)
    if filler.mismatches:
        raise ValueError(
            f"{source}: values contradict the training config (set them to 'auto'):\n"
            + "\n".join(filler.mismatches)
        )
    out = filler.config
    left = [k for k, v in _flatten(out).items() if v == AUTO]
    if left:
        raise ValueError(f"{source}: no value known for 'auto' keys {left}")
    return out


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_deepspeed_config(path: str | Path) -> dict[str, Any]:
    with open(path) as handle:
        return json.load(handle)


def zero_stage(config: Mapping[str, Any]) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


# ---- engines ----------------------------------------------------------------------------------
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


class PlainEngine:
    """Single-process PyTorch: accumulate ``accumulation`` micro-batches, clip, step."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        accumulation: int,
        max_grad_norm: float,
        device: str,
        bf16: bool,
    ) -> None:
        self.model = model.to(device)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.accumulation = accumulation
        self.max_grad_norm = max_grad_norm
        self.device = device
        self.bf16 = bf16

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        device_type = torch.device(self.device).type
        context = (
            torch.autocast(device_type, dtype=torch.bfloat16)
            if self.bf16
            else contextlib.nullcontext()
        )
        with context:
            return self.model(**batch)["loss"]

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.accumulation).backward()

    def step(self) -> float:
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return float(norm)

    def save(self, root: Path, tag: str, client_state: Mapping[str, Any]) -> None:
        from vislaw.io.atomic import atomic_dir, write_text_atomic
        from vislaw.io.tensors import save_tensors

        with atomic_dir(root / tag) as tmp:
            # with a checksum: a resumed run must not continue from damaged weights
            save_tensors(trainable_state(self.model), tmp / "trainable.safetensors", {})
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                },
                tmp / "optimizer.pt",
            )
            (tmp / "client_state.json").write_text(json.dumps(dict(client_state)))
        write_text_atomic(root / "latest", tag)

    def load(self, root: Path, tag: str) -> dict[str, Any]:
        from vislaw.io.provenance import read_json
        from vislaw.io.tensors import load_tensors

        folder = root / tag
        state, _ = load_tensors(folder / "trainable.safetensors")
        missing = set(trainable_state(self.model)) - set(state)
        if missing:
            raise RuntimeError(
                f"{folder}: checkpoint lacks trainable weights {sorted(missing)[:3]}"
            )
        self.model.load_state_dict(state, strict=False)
        opt = torch.load(folder / "optimizer.pt", map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(opt["optimizer"])
        self.scheduler.load_state_dict(opt["scheduler"])
        return read_json(folder / "client_state.json")

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def current_lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])


class DeepSpeedEngine:
    """``deepspeed.initialize`` with our optimizer and scheduler; DeepSpeed accumulates
    (``gradient_accumulation_steps``), clips and steps at global-batch boundaries."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        config: Mapping[str, Any],
    ) -> None:
        import deepspeed

        self.config = dict(config)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=self.config
        )
        self.model = self.engine.module
        self.device = str(self.engine.device)

    def forward(self, batch: Mapping[str, Any]) -> torch.Tensor:
        return self.engine(**batch)["loss"]

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)
        self.engine.step()  # a no-op except at the end of the accumulation window

    def step(self) -> float:
        """The optimizer already stepped inside the window's last ``backward``; report the
        gradient norm DeepSpeed measured there."""
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else float("nan")

    def save(self, root: Path, tag: str, client_state: Mapping[str, Any]) -> None:
        self.engine.save_checkpoint(
            str(root), tag=tag, client_state=dict(client_state), exclude_frozen_parameters=True
        )

    def load(self, root: Path, tag: str) -> dict[str, Any]:
        path, client_state = self.engine.load_checkpoint(
            str(root), tag=tag, load_module_strict=False
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {root / tag}")
        return dict(client_state or {})

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """All weights on rank 0 (ZeRO-3 partitions gathered layer by layer); call on every
        rank, since gathering is collective."""
        if zero_stage(self.config) == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()
        return self.model.state_dict()

    def current_lr(self) -> float:
        return float(self.scheduler.get_last_lr()[0])

"""Nothing non-finite or diverged is ever exported: the weights are checked, not only the loss.

Why: with ``lr: .inf`` one optimizer step turns every trained weight into NaN while the loss of
that step was still finite, and with ``lr: 1e6`` training ends with exit 0 and weights of size
1e6. The loss check in the step loop sees neither. This guard checks the trained weights after
every optimizer step (the tensors this process holds) and the full state before the export.

Divergence rule (docs/refuses.md): a trained tensor diverged when its largest
magnitude exceeds ``DIVERGENCE_FACTOR`` x max(its largest magnitude when the phase started, 1).
Adam-type updates move a weight by about ``lr`` per step, so a sane run (lr <= 1e-3, thousands
of steps) stays far inside the bound, while a blow-up passes it within a step or two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

DIVERGENCE_FACTOR = 100.0


class DivergenceError(FloatingPointError):
    """Training produced weights that must not be exported (non-finite or diverged)."""


def _max_abs(tensor: torch.Tensor) -> float:
    return float(tensor.detach().abs().max()) if tensor.numel() else 0.0


def _gathered_max_abs(param: torch.nn.Parameter) -> float | None:
    """Largest magnitude of a ZeRO-3 partitioned parameter (collective: every rank calls)."""
    try:
        import deepspeed
    except ImportError:  # pragma: no cover - ZeRO-3 parameters imply DeepSpeed
        return None
    with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
        return _max_abs(param.data)


@dataclass
class DivergenceGuard:
    """Initial scales of the trained tensors, and the checks against them."""

    where: str  # e.g. "llava.stage1 'clip224'"
    hint: str  # e.g. "lower train.stage1.lr"
    initial: dict[str, float] = field(default_factory=dict)

    @classmethod
    def start(cls, model: torch.nn.Module, where: str, hint: str) -> DivergenceGuard:
        """Record the trained parameters' scales before the first step of the phase."""
        initial: dict[str, float] = {}
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            if param.numel() == 0 and hasattr(param, "ds_numel"):
                scale = _gathered_max_abs(param)
                if scale is not None:
                    initial[name] = scale
            else:
                initial[name] = _max_abs(param)
        return cls(where, hint, initial)

    def bound(self, name: str) -> float:
        return DIVERGENCE_FACTOR * max(self.initial.get(name, 0.0), 1.0)

    def _check(self, name: str, tensor: torch.Tensor, step: int | None, when: str) -> None:
        at = f"at step {step}" if step is not None else "before the first step"
        if not bool(torch.isfinite(tensor).all()):
            raise DivergenceError(
                f"{self.where}: weight '{name}' is not finite {when} {at}; nothing was "
                f"exported. {self.hint}"
            )
        if name in self.initial:
            scale = _max_abs(tensor)
            if scale > self.bound(name):
                raise DivergenceError(
                    f"{self.where}: training diverged {at}: weight '{name}' reached "
                    f"|w| = {scale:.3g}, over {DIVERGENCE_FACTOR:g} x its initial scale "
                    f"(bound {self.bound(name):.3g}); nothing was exported. {self.hint}"
                )

    def check_model(self, model: torch.nn.Module, step: int) -> None:
        """After an optimizer step: the trained parameters this process holds (a ZeRO-3 shard
        shows as empty here; the export check sees the gathered tensor)."""
        for name, param in model.named_parameters():
            if param.requires_grad and param.numel():
                self._check(name, param.detach(), step, "after the optimizer step")

    def check_state(self, state: Mapping[str, torch.Tensor], step: int | None) -> None:
        """Before the export: every floating tensor of the full state (frozen ones too, so a
        broken checkpoint we started from is not passed on)."""
        for name, tensor in state.items():
            if torch.is_tensor(tensor) and tensor.is_floating_point():
                self._check(name, tensor, step, "in the weights to export")

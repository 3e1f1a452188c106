"""LoRA on the LLM (peft; train.stage2.lora, docs/policy.md): wrapping it for training, and
merging a saved adapter back into the base weights when a stage folder is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel

    from vislaw.train.settings import LoraSettings


def with_lora(llm: PreTrainedModel, lora: LoraSettings) -> nn.Module:
    """The LLM wrapped with trainable LoRA adapters (peft); its own weights are frozen.

    ``lora``: train.stage2.lora (r, alpha, dropout, targets: module names, e.g. q_proj
    v_proj, or "all-linear"); the schema holds the defaults.
    """
    from peft import LoraConfig, get_peft_model

    targets = lora.targets
    config = LoraConfig(
        r=int(lora.r),
        lora_alpha=float(lora.alpha),
        lora_dropout=float(lora.dropout),
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(llm, config)


def merge_lora(llm: PreTrainedModel, adapter: str | Path) -> PreTrainedModel:
    """The LLM with a saved LoRA adapter merged into its weights (plain inference after)."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter}: no adapter_config.json (vlm.json names a LoRA adapter)"
        )
    return PeftModel.from_pretrained(llm, str(adapter)).merge_and_unload()

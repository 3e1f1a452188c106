"""``eval:`` settings (lmms-eval benchmarking of the stage-2 models, docs/evaluation.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from vislaw.sections import Section


@dataclass(frozen=True)
class EvalSettings(Section):
    """A typed view of the checked ``eval`` section; the schema holds the defaults."""

    SECTION: ClassVar[str] = "eval"
    jobs: Literal["per_encoder", "per_benchmark"]
    batch_size: int
    dtype: Literal["float32", "bfloat16", "float16"]
    max_new_tokens: int | None
    limit: int | None
    tasks: Mapping[str, str]
    metrics: Mapping[str, str]

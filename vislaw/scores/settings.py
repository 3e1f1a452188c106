"""Typed views of the ``c_score`` and ``a_score`` config sections (vislaw.sections).

The schema (vislaw/schema/config.schema.yaml) holds every default and constraint (e.g.
``c_score.alphas`` must hold 0.1); these models hold none.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from vislaw.sections import Section


@dataclass(frozen=True)
class CScoreSettings(Section):
    """``c_score``: SPair-71k keypoint matching from the cached features (docs/c_score.md)."""

    SECTION: ClassVar[str] = "c_score"
    matcher: str
    window: int
    temperature: float
    upsample: int
    alphas: tuple[float, ...]
    block_size: int
    memory_gb: float


@dataclass(frozen=True)
class AScoreSettings(Section):
    """``a_score``: the image sample per benchmark and the reference encoders (docs/a_score.md)."""

    SECTION: ClassVar[str] = "a_score"
    n_images: int
    n_captions: int
    batch_size: int
    dtype: str
    references: Mapping[str, str]

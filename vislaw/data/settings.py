"""Typed views of the ``data`` and ``cache`` config sections (vislaw.sections).

The schema (vislaw/schema/config.schema.yaml) holds every default; these models only give the
checked values names and types. ``data.synthetic``, ``data.pretrain``, ``data.instruct`` and
``data.spair`` are optional: their presence is what tells the workflow which data a run has
(``data.synthetic`` present = generate the demo data), so an absent one is None.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from vislaw.config import ConfigError
from vislaw.layout import resolve_data_path
from vislaw.sections import Section


@dataclass(frozen=True)
class SyntheticSettings(Section):
    """``data.synthetic``: sizes of the seeded demo datasets (docs/data.md)."""

    image_size: int
    n_pretrain: int
    n_instruct: int
    n_spair_images_per_category: int
    n_spair_pairs_per_category: int
    spair_categories: tuple[str, ...]
    n_benchmark_questions: int

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON values (the demo manifest records them)."""
        return {
            "image_size": self.image_size,
            "n_pretrain": self.n_pretrain,
            "n_instruct": self.n_instruct,
            "n_spair_images_per_category": self.n_spair_images_per_category,
            "n_spair_pairs_per_category": self.n_spair_pairs_per_category,
            "spair_categories": list(self.spair_categories),
            "n_benchmark_questions": self.n_benchmark_questions,
        }


@dataclass(frozen=True)
class LlavaJsonSettings(Section):
    """``data.pretrain`` / ``data.instruct``: a LLaVA JSON and its image folder (under root)."""

    json: str
    image_folder: str


@dataclass(frozen=True)
class SpairSettings(Section):
    """``data.spair``: the SPair-71k folder (under ``data.root``) and the split C is scored on."""

    root: str
    split: str


@dataclass(frozen=True)
class PrepareSettings(Section):
    """``data.prepare``: the limits that keep ``prepare`` safe (vislaw.prepare: expansion guard,
    stall detection)."""

    max_unpack_ratio: float
    max_unpack_gb: float
    stall_min_bytes_per_s: int
    stall_window_s: float


@dataclass(frozen=True)
class DataSettings(Section):
    """``data``: where the datasets are (relative paths are under ``root``)."""

    SECTION: ClassVar[str] = "data"
    synthetic: SyntheticSettings | None
    root: str
    pretrain: LlavaJsonSettings | None
    instruct: LlavaJsonSettings | None
    spair: SpairSettings | None
    benchmark_root: str
    max_image_pixels: int
    sources: Mapping[str, Any]
    prepare: PrepareSettings

    def path(self, value: str | Path) -> Path:
        """A data path of this section: relative ones are under ``root`` (vislaw.layout)."""
        return resolve_data_path(self.root, value)

    def spair_root(self) -> Path:
        """The SPair-71k folder; a ConfigError names ``data.spair`` when the config has none."""
        if self.spair is None:
            raise ConfigError("data.spair", "missing: this step needs the SPair-71k dataset")
        return self.path(self.spair.root)

    def benchmarks_root(self) -> Path:
        """The folder of local benchmark sets (``data.root``/``data.benchmark_root``)."""
        return self.path(self.benchmark_root)


@dataclass(frozen=True)
class CacheSettings(Section):
    """``cache``: the Hub cache prepared for offline jobs (docs/data.md)."""

    SECTION: ClassVar[str] = "cache"
    hf_home: str | None
    revisions: Mapping[str, str]

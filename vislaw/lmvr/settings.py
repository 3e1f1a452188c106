"""The ``lmvr:`` config section as typed settings, and the output layout (shared by the rules,
the job entry points and the CLI, so names are spelt in one place).

Layout under ``<results_dir>/<run>/lmvr/``::

    features/<encoder>/lmvr/<condition>.h5      pooled hidden states (N, variants, d_llm)
    features/<encoder>/baseline/<condition>.h5  the encoder's mean-pooled tokens (N, 1, C)
    features/<encoder>/responses.jsonl          id, condition, response of every image
    maps/<encoder>/*.png, maps/<encoder>/index.csv
    probe.csv                                   encoder, features, corruption, severity, accuracy

``<condition>`` is ``clean`` or ``<corruption>-<severity>`` (vislaw.lmvr.corruptions).
Light on purpose: the Snakefile imports this module while parsing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislaw.config import ConfigError
from vislaw.layout import (
    LMVR_KINDS,
    LMVR_MAPS_INDEX,
    LMVR_RESPONSES,
    LMVR_SYNTHETIC_FOLDER,
    lmvr_feature_file,
    under_data_root,
)
from vislaw.lmvr.corruptions import condition_name, conditions

SYNTHETIC_FOLDER = LMVR_SYNTHETIC_FOLDER
"""Where the demo's synthetic ImageFolder goes, relative to data.root (vislaw.layout)."""
KINDS = LMVR_KINDS
RESPONSES_FILE = LMVR_RESPONSES
MAPS_INDEX = LMVR_MAPS_INDEX


@dataclass(frozen=True)
class ProbeSettings:
    test_fraction: float = 0.3
    seed: int = 0
    C: float = 1.0
    max_iter: int = 1000
    train_on: str = "clean"
    """``clean``: fit on the clean training split, score every condition's test split (the
    robustness protocol); ``same``: fit and score within each condition."""


@dataclass(frozen=True)
class MapSettings:
    layer: int = -1
    similarity: tuple[str, ...] = ("attention",)
    words: tuple[str, ...] = ()
    first_words: int = 3
    n_images: int = 4
    size: int = 256


@dataclass(frozen=True)
class LmvrSettings:
    encoders: tuple[str, ...]
    prompt: str = "Describe the image briefly."
    max_new_tokens: int = 32
    min_new_tokens: int = 0
    batch_size: int = 8
    dtype: str = "float32"
    pooling: tuple[str, ...] = ("all", "image", "response")
    layers: tuple[int, ...] = (-1,)
    corruptions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    probe: ProbeSettings = field(default_factory=ProbeSettings)
    maps: MapSettings = field(default_factory=MapSettings)

    @property
    def conditions(self) -> list[tuple[str, int]]:
        """(corruption, severity) pairs, ("clean", 0) first."""
        return conditions(dict(self.corruptions))

    @property
    def condition_names(self) -> list[str]:
        return [condition_name(c, s) for c, s in self.conditions]


def lmvr_settings(config: Mapping[str, Any]) -> LmvrSettings:
    """Settings from a checked config (defaults filled); ConfigError names a bad key."""
    section = config.get("lmvr", {})
    names = list(config["encoders"])
    chosen = section.get("encoders") or names
    missing = [n for n in chosen if n not in names]
    if missing:
        raise ConfigError("lmvr.encoders", f"{missing} are not in `encoders` ({names})")
    if section.get("min_new_tokens", 0) > section.get(
        "max_new_tokens", LmvrSettings.max_new_tokens
    ):
        raise ConfigError("lmvr.min_new_tokens", "exceeds lmvr.max_new_tokens")
    probe = section.get("probe", {})
    maps = section.get("maps", {})
    corruptions = {k: tuple(v) for k, v in section.get("corruptions", {}).items()}
    return LmvrSettings(
        encoders=tuple(chosen),
        prompt=section.get("prompt", LmvrSettings.prompt),
        max_new_tokens=section.get("max_new_tokens", LmvrSettings.max_new_tokens),
        min_new_tokens=section.get("min_new_tokens", LmvrSettings.min_new_tokens),
        batch_size=section.get("batch_size", LmvrSettings.batch_size),
        dtype=section.get("dtype", LmvrSettings.dtype),
        pooling=tuple(section.get("pooling", LmvrSettings.pooling)),
        layers=tuple(section.get("layers", LmvrSettings.layers)),
        corruptions=corruptions,
        seed=int(config.get("seed", 0)),
        probe=ProbeSettings(**probe),
        maps=MapSettings(**{k: tuple(v) if isinstance(v, list) else v for k, v in maps.items()}),
    )


@dataclass(frozen=True)
class SyntheticImages:
    """The demo's labelled set (``lmvr.synthetic``): shape classes drawn like the demo data."""

    classes: tuple[str, ...] = ("circle", "square", "triangle")
    per_class: int = 14
    image_size: int = 96


def synthetic_images(config: Mapping[str, Any]) -> SyntheticImages:
    section = dict(config.get("lmvr", {}).get("synthetic", {}))
    if "classes" in section:
        section["classes"] = tuple(section["classes"])
    return SyntheticImages(**section)


def image_folder(config: Mapping[str, Any]) -> Path | None:
    """The labelled ImageFolder: ``lmvr.image_folder`` (relative paths under data.root), or the
    generated synthetic one when the data are synthetic; None when neither is given."""
    given = config.get("lmvr", {}).get("image_folder")
    if given:
        return under_data_root(config, given)
    if "synthetic" in config["data"]:
        return under_data_root(config, LMVR_SYNTHETIC_FOLDER)
    return None


def require_image_folder(config: Mapping[str, Any]) -> Path:
    folder = image_folder(config)
    if folder is None:
        raise ConfigError(
            "lmvr.image_folder",
            "required with real data: an ImageFolder (<folder>/<class>/<images>) to probe",
        )
    return folder


def feature_file(features_dir: str | Path, kind: str, condition: str) -> Path:
    """``<features_dir>/<kind>/<condition>.h5`` (features_dir is ``lmvr/features/<encoder>``)."""
    return Path(lmvr_feature_file(features_dir, kind, condition))


def feature_files(features_dir: str | Path, names: Sequence[str]) -> dict[str, dict[str, Path]]:
    """kind -> condition -> path, for every kind and condition name."""
    return {k: {c: feature_file(features_dir, k, c) for c in names} for k in KINDS}

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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Self

from vislaw.config import ConfigError
from vislaw.layout import LMVR_KINDS, LMVR_SYNTHETIC_FOLDER, lmvr_feature_file, under_data_root
from vislaw.lmvr.corruptions import condition_name, conditions
from vislaw.sections import Section


@dataclass(frozen=True)
class ProbeSettings(Section):
    """``lmvr.probe``: the linear probes (vislaw.lmvr.probe). ``train_on``: ``clean`` fits on
    the clean training split and scores every condition's test split (the robustness
    protocol); ``same`` fits and scores within each condition."""

    SECTION: ClassVar[str] = "lmvr.probe"
    test_fraction: float
    seed: int
    C: float
    max_iter: int
    train_on: str


@dataclass(frozen=True)
class MapSettings(Section):
    """``lmvr.maps``: the token-level maps of a few clean images (vislaw.lmvr.maps)."""

    SECTION: ClassVar[str] = "lmvr.maps"
    layer: int
    similarity: tuple[str, ...]
    words: tuple[str, ...]
    first_words: int
    n_images: int
    size: int


@dataclass(frozen=True)
class SyntheticImages(Section):
    """``lmvr.synthetic``: the demo's labelled set, shape classes drawn like the demo data."""

    SECTION: ClassVar[str] = "lmvr.synthetic"
    classes: tuple[str, ...]
    per_class: int
    image_size: int


@dataclass(frozen=True)
class LmvrSettings(Section):
    """Config key ``lmvr`` (docs/lmvr.md), plus the run's seed (it seeds the corruptions).

    Built by :meth:`from_config`, ``encoders`` is the list of encoders to run (``null`` in the
    config: every configured encoder), checked against ``encoders``.
    """

    SECTION: ClassVar[str] = "lmvr"
    DERIVED: ClassVar[frozenset[str]] = frozenset({"seed"})

    encoders: tuple[str, ...] | None
    image_folder: str | None
    synthetic: SyntheticImages
    prompt: str
    max_new_tokens: int
    min_new_tokens: int
    batch_size: int
    dtype: str
    pooling: tuple[str, ...]
    layers: tuple[int, ...]
    corruptions: Mapping[str, tuple[int, ...]]
    probe: ProbeSettings
    maps: MapSettings
    seed: int

    def __post_init__(self) -> None:
        if self.min_new_tokens > self.max_new_tokens:
            raise ConfigError("lmvr.min_new_tokens", "exceeds lmvr.max_new_tokens")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **derived: Any) -> Self:
        """From a checked config: the ``lmvr`` section with its encoders resolved, and the
        top-level ``seed``. ConfigError names a bad key."""
        settings = super().from_config(config, seed=config["seed"], **derived)
        names = list(config["encoders"])
        chosen = settings.encoders or tuple(names)
        missing = [n for n in chosen if n not in names]
        if missing:
            raise ConfigError("lmvr.encoders", f"{missing} are not in `encoders` ({names})")
        return replace(settings, encoders=tuple(chosen))

    @property
    def conditions(self) -> list[tuple[str, int]]:
        """(corruption, severity) pairs, ("clean", 0) first."""
        return conditions(dict(self.corruptions))

    @property
    def condition_names(self) -> list[str]:
        return [condition_name(c, s) for c, s in self.conditions]


def lmvr_settings(config: Mapping[str, Any]) -> LmvrSettings:
    """Settings from a checked config (:meth:`LmvrSettings.from_config`; what the rules call)."""
    return LmvrSettings.from_config(config)


def image_folder(config: Mapping[str, Any]) -> Path | None:
    """The labelled ImageFolder: ``lmvr.image_folder`` (relative paths under data.root), or the
    generated synthetic one when the data are synthetic; None when neither is given."""
    given = config["lmvr"]["image_folder"]
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
    return {k: {c: feature_file(features_dir, k, c) for c in names} for k in LMVR_KINDS}

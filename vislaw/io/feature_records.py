"""The record a features file keeps of what made it, and the check a consumer makes of it.

Apart from vislaw.features (which builds encoders) so that the C score, run in the light
analysis env, checks a features file without importing the encoder zoo.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vislaw.io.hdf5 import open_features
from vislaw.io.provenance import InputError, check_encoder_record, check_record

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec
    from vislaw.features import FeaturesSettings

# Settings of ``features`` that change the file (batch_size only changes the batching).
RECORDED_SETTINGS = ("image_set", "max_images", "dtype")


def check_features_file(
    path: str | Path,
    spec: EncoderSpec,
    features: FeaturesSettings | None = None,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Refuse a features file made for another encoder spec, or (``features`` given) with other
    ``features`` settings than the config's, naming the file and the key; returns its meta.
    A fusion's file records its members by name and is checked on its own spec."""
    from dataclasses import asdict

    if meta is None:
        with open_features(path) as handle:
            meta = dict(handle.meta)
    check_encoder_record(path, meta.get("encoder"), spec.to_attrs())
    if features is not None and spec.family != "fusion":
        if "settings" not in meta:
            raise InputError(path, "records no features settings (an older vislaw wrote it)")
        wanted = {k: v for k, v in asdict(features).items() if k in RECORDED_SETTINGS}
        check_record(path, meta.get("settings") or {}, wanted, "features")
    return dict(meta)

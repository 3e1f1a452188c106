"""A feature file's channel count, and a fusion file's member channel groups.

A fusion's vector is its members' features concatenated; the C score normalises each member's
block on its own (vislaw.scores.correspondence.matching.normalise_features), so it needs the
members' channel counts, which only their own HDF5 files hold.
"""

from __future__ import annotations

from pathlib import Path

from vislaw.io.hdf5 import open_features


def feature_channels(path: str | Path) -> int:
    """Channel count C of a feature file (reads the shape only)."""
    with open_features(path) as handle:
        return int(handle.features.shape[2])


def fusion_channel_groups(path: str | Path) -> list[int] | None:
    """Member channel counts of a fusion feature file, None for a single encoder.

    The fusion file's meta names its encoder spec (family ``fusion``, member names) and the
    member files it was concatenated from; the member files are looked up as written, then
    beside the fusion file, and their channel counts must add up to the fusion's.
    """
    path = Path(path)
    with open_features(path) as handle:
        meta, channels = handle.meta, int(handle.features.shape[2])
    encoder = meta.get("encoder") or {}
    written = [Path(p) for p in meta.get("members") or []]
    if encoder.get("family") != "fusion" and not written:
        return None
    names = list(encoder.get("members") or [p.stem for p in written])
    groups = []
    for i, name in enumerate(names):
        tried = [written[i], path.parent / written[i].name] if i < len(written) else []
        tried.append(path.parent / f"{name}.h5")
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{path}: fusion member '{name}' features not found: {tried}")
        groups.append(feature_channels(found))
    if sum(groups) != channels:
        raise ValueError(f"{path}: member channels {groups} do not add up to {channels}")
    return groups

"""The one HDF5 writer/reader for token features and embeddings.

Layout of a file: dataset ``features`` of shape (N, tokens, C) (chunked one item per chunk,
compressed), dataset ``ids`` (N, UTF-8 strings: image ids relative to their image folder), and
attributes: ``grid`` (rows, cols) when the tokens form a grid, plus JSON-encoded ``meta``
(encoder spec, checkpoint hash, ...). Writes stream in batches and finish with an atomic rename,
so peak memory does not grow with N and an interrupted write leaves no file under the final name.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from vislaw.io.atomic import atomic_path
from vislaw.io.provenance import InputError

FEATURES = "features"
IDS = "ids"


class FeatureWriter:
    """Appends batches of (ids, features) to an open HDF5 file of known total size."""

    def __init__(self, handle: h5py.File, n_items: int, tokens: int, channels: int, dtype: str):
        self._handle = handle
        self._n = n_items
        self._filled = 0
        self.features = handle.create_dataset(
            FEATURES,
            shape=(n_items, tokens, channels),
            dtype=dtype,
            chunks=(1, tokens, channels),
            # lzf: several times faster to read back than gzip (the C score re-reads whole
            # caches), built into h5py, and still about halves float16 features.
            compression="lzf",
            shuffle=True,
        )
        self.ids = handle.create_dataset(IDS, shape=(n_items,), dtype=h5py.string_dtype())

    def append(self, ids: Sequence[str], features: np.ndarray) -> None:
        features = np.asarray(features)
        if features.shape[0] != len(ids):
            raise ValueError(f"{len(ids)} ids for a batch of {features.shape[0]} features")
        if features.shape[1:] != self.features.shape[1:]:
            raise ValueError(
                f"batch shape {features.shape[1:]} != file shape {self.features.shape[1:]}"
            )
        end = self._filled + len(ids)
        if end > self._n:
            raise ValueError(f"more than the declared {self._n} items")
        self.features[self._filled : end] = features.astype(self.features.dtype, copy=False)
        self.ids[self._filled : end] = list(ids)
        self._filled = end

    @property
    def complete(self) -> bool:
        return self._filled == self._n


@contextlib.contextmanager
def write_features(
    path: str | Path,
    n_items: int,
    tokens: int,
    channels: int,
    *,
    dtype: str = "float16",
    grid: tuple[int, int] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Iterator[FeatureWriter]:
    """Context manager: stream batches in; the file appears under ``path`` only when all
    ``n_items`` were written and the block ended cleanly."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        if grid is not None:
            handle.attrs["grid"] = np.asarray(grid, dtype=np.int64)
        handle.attrs["meta"] = json.dumps(dict(meta or {}), sort_keys=True, default=str)
        writer = FeatureWriter(handle, n_items, tokens, channels, dtype)
        yield writer
        if not writer.complete:
            raise RuntimeError(f"{path}: wrote {writer._filled} of {n_items} items")


@dataclass
class FeatureFile:
    """What :func:`read_features` returns (features loaded eagerly; use ``open_features``
    for lazy access to large files)."""

    ids: list[str]
    features: np.ndarray
    grid: tuple[int, int] | None
    meta: dict[str, Any]


def _decode_ids(raw: np.ndarray) -> list[str]:
    return [x.decode() if isinstance(x, bytes) else str(x) for x in raw]


@contextlib.contextmanager
def _open_checked(path: str | Path) -> Iterator[h5py.File]:
    """The file open for reading, or InputError naming it when it is missing, not HDF5
    (truncated, overwritten) or lacks the ``features``/``ids`` datasets; h5py's own errors
    name neither the file nor what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: feature file not found")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file (truncated or corrupt?): {err}") from err
    with handle:
        missing = [name for name in (FEATURES, IDS) if name not in handle]
        if missing:
            raise InputError(path, f"no {missing} dataset(s): not a vislaw feature file")
        yield handle


def _meta(path: str | Path, handle: h5py.File) -> dict[str, Any]:
    try:
        return json.loads(handle.attrs.get("meta", "{}"))
    except (json.JSONDecodeError, TypeError) as err:
        raise InputError(path, f"attribute 'meta' is not JSON: {err}") from err


def _read_all(path: str | Path, dataset: h5py.Dataset) -> np.ndarray:
    """A whole dataset; a damaged chunk (a file cut or overwritten inside its data) names the
    file instead of surfacing as a bare h5py OSError."""
    try:
        return dataset[()]
    except OSError as err:
        raise InputError(path, f"cannot read dataset '{dataset.name}' (corrupt?): {err}") from err


def read_features(path: str | Path) -> FeatureFile:
    with _open_checked(path) as handle:
        return FeatureFile(
            ids=_decode_ids(_read_all(path, handle[IDS])),
            features=_read_all(path, handle[FEATURES]),
            grid=_grid(handle),
            meta=_meta(path, handle),
        )


@dataclass
class LazyFeatureFile:
    """An open file: ``features`` is the h5py dataset, read slice by slice."""

    ids: list[str]
    features: h5py.Dataset
    grid: tuple[int, int] | None
    meta: dict[str, Any]


def _grid(handle: h5py.File) -> tuple[int, int] | None:
    return tuple(int(v) for v in handle.attrs["grid"]) if "grid" in handle.attrs else None


@contextlib.contextmanager
def open_features(path: str | Path) -> Iterator[LazyFeatureFile]:
    """Lazy access while the file is open (peak memory independent of N)."""
    with _open_checked(path) as handle:
        yield LazyFeatureFile(
            ids=_decode_ids(_read_all(path, handle[IDS])),
            features=handle[FEATURES],
            grid=_grid(handle),
            meta=_meta(path, handle),
        )

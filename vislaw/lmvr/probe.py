"""Linear probes on image-level features: logistic regression with a fixed seed and split.

The split is stratified by class and drawn once from ``seed``, by image id, so every feature
set and every corrupted copy of an image falls on the same side of it. Features are
standardised with the training split's mean and standard deviation; the classifier is
scikit-learn's ``LogisticRegression`` (L2, lbfgs), which is deterministic for given data.

Protocol (``train_on``): ``clean`` fits each probe once on the clean training images and scores
the test images of every condition (how well a representation's linear readout survives the
corruption); ``same`` fits and scores within each condition.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vislaw.io.atomic import write_csv
from vislaw.io.hdf5 import read_features
from vislaw.io.provenance import check_record
from vislaw.lmvr.corruptions import CLEAN
from vislaw.lmvr.settings import ProbeSettings, feature_file

PROBE_COLUMNS = ("encoder", "features", "corruption", "severity", "accuracy")
BASELINE = "baseline"


def labels_of(ids: Sequence[str]) -> list[str]:
    """Class of each ImageFolder id (its first path part)."""
    return [i.split("/", 1)[0] for i in ids]


def stratified_split(
    labels: Sequence[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) index arrays: per class, a seeded shuffle puts round(n x fraction) items
    (at least one, and at least one left to train on) in the test split. Sorted indices."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise ValueError(f"class {label!r} has {len(members)} image(s); a split needs >= 2")
        members = rng.permutation(members)
        n_test = min(max(1, round(len(members) * test_fraction)), len(members) - 1)
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


@dataclass
class LinearProbe:
    """Standardisation + logistic regression, fitted on one training set."""

    mean: np.ndarray
    scale: np.ndarray
    model: object

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict((np.asarray(x, np.float64) - self.mean) / self.scale)

    def accuracy(self, x: np.ndarray, y: Sequence[str]) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))


def fit_probe(x: np.ndarray, y: Sequence[str], settings: ProbeSettings) -> LinearProbe:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-12] = 1.0
    model = LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit((x - mean) / scale, np.asarray(y))
    return LinearProbe(mean, scale, model)


def probe_accuracies(
    conditions: Mapping[tuple[str, int], np.ndarray],
    labels: Sequence[str],
    settings: ProbeSettings,
) -> dict[tuple[str, int], float]:
    """Test accuracy per (corruption, severity) of one feature set; ``conditions`` maps each to
    (N, D) features in one common image order, and must hold ("clean", 0)."""
    if (CLEAN, 0) not in conditions:
        raise ValueError("the clean features are needed (the probe's split and clean fit)")
    train, test = stratified_split(labels, settings.test_fraction, settings.seed)
    y = np.asarray(labels)
    clean_probe = None
    out = {}
    for key, x in conditions.items():
        if x.shape[0] != len(y):
            raise ValueError(f"condition {key}: {x.shape[0]} rows for {len(y)} labels")
        if settings.train_on == "same":
            probe = fit_probe(x[train], y[train], settings)
        else:
            if clean_probe is None:
                clean_probe = fit_probe(conditions[(CLEAN, 0)][train], y[train], settings)
            probe = clean_probe
        out[key] = probe.accuracy(x[test], y[test])
    return out


def _load(path: Path, ids: list[str] | None) -> tuple[list[str], np.ndarray, dict]:
    if not path.is_file():
        raise FileNotFoundError(f"feature file {path} not found")
    data = read_features(path)
    if ids is not None and data.ids != ids:
        raise ValueError(f"{path}: image ids differ from the clean file's")
    return data.ids, data.features, data.meta


def encoder_rows(
    encoder: str,
    features_dir: str | Path,
    conditions: Sequence[tuple[str, int]],
    condition_names: Sequence[str],
    settings: ProbeSettings,
) -> list[dict[str, object]]:
    """Probe rows of one encoder: the baseline, then each LMVR variant, over all conditions."""
    rows: list[dict[str, object]] = []
    for kind in ("baseline", "lmvr"):
        ids: list[str] | None = None
        per_condition = {}
        meta: dict = {}
        for key, name in zip(conditions, condition_names, strict=True):
            path = feature_file(features_dir, kind, name)
            ids, feats, meta = _load(path, ids)
            # the file must be this encoder's, of this condition (not one copied over it)
            recorded = {k: meta.get(k) for k in ("encoder", "condition")}
            check_record(path, recorded, {"encoder": encoder, "condition": name}, "lmvr")
            per_condition[key] = feats
        assert ids is not None
        variants = [BASELINE] if kind == "baseline" else [f"lmvr_{v}" for v in meta["variants"]]
        for v, variant in enumerate(variants):
            sets = {key: feats[:, v, :] for key, feats in per_condition.items()}
            accuracy = probe_accuracies(sets, labels_of(ids), settings)
            rows += [
                {
                    "encoder": encoder,
                    "features": variant,
                    "corruption": key[0],
                    "severity": key[1],
                    "accuracy": round(acc, 6),
                }
                for key, acc in accuracy.items()
            ]
    return rows


def write_probe_csv(rows: Iterable[Mapping[str, object]], path: str | Path) -> Path:
    """``probe.csv``: the :data:`PROBE_COLUMNS` of every row (other keys are dropped)."""
    return write_csv(path, [{k: row[k] for k in PROBE_COLUMNS} for row in rows], PROBE_COLUMNS)

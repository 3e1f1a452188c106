"""One encoder's C-score row from its feature file: step ``c_score``.

Reads the SPair split and the feature file once, matches every query and writes the row; the
file's record (encoder spec, ``features`` settings) is checked against the config first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vislaw.data.settings import DataSettings
from vislaw.data.spair import load_pairs
from vislaw.io.atomic import write_csv
from vislaw.io.hdf5 import open_features
from vislaw.io.provenance import file_sha256
from vislaw.scores.correspondence.fusion import feature_channels, fusion_channel_groups
from vislaw.scores.correspondence.matching import MatchSettings
from vislaw.scores.correspondence.pck import ALPHAS
from vislaw.scores.correspondence.queries import build_queries, predict_keypoints
from vislaw.scores.correspondence.table import make_row
from vislaw.scores.settings import CScoreSettings
from vislaw.scores.symmetry import symmetric_groups

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec
    from vislaw.features import FeaturesSettings


@dataclass(frozen=True)
class ScoreInputs:
    """What :func:`score_features` needs besides the feature file."""

    spair_root: str | Path
    split: str = "test"
    settings: MatchSettings = MatchSettings()
    alphas: tuple[float, ...] = ALPHAS
    symmetry: str = "spair"
    block_size: int = 16
    memory_gb: float = 4.0  # feature files up to this size are read once, not streamed twice


def score_inputs(c_score: CScoreSettings, data: DataSettings) -> ScoreInputs:
    """Scoring inputs from the ``c_score`` and ``data`` settings: the SPair root and split, and
    the demo generator's symmetric groups when data are synthetic."""
    spair_root = data.spair_root()  # ConfigError naming data.spair when the config has none
    assert data.spair is not None
    return ScoreInputs(
        spair_root=spair_root,
        split=data.spair.split,
        settings=MatchSettings.from_settings(c_score),
        alphas=tuple(float(a) for a in c_score.alphas),
        symmetry="synthetic" if data.synthetic is not None else "spair",
        block_size=c_score.block_size,
        memory_gb=float(c_score.memory_gb),
    )


def inputs_from_config(config: Mapping[str, Any]) -> ScoreInputs:
    """:func:`score_inputs` of a checked workflow config."""
    return score_inputs(CScoreSettings.from_config(config), DataSettings.from_config(config))


def score_features(
    features_path: str | Path,
    inputs: ScoreInputs,
    *,
    encoder: str | None = None,
    channel_groups: Sequence[int] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """One C-score row for one encoder's feature file (see :data:`TABLE_COLUMNS`).

    ``channel_groups`` defaults to :func:`fusion_channel_groups` of the file (None for a single
    encoder). The grid and input size come from the file (attrs ``grid``, meta
    ``encoder.input_size``).
    """
    features_path = Path(features_path)
    pairs = load_pairs(inputs.spair_root, inputs.split)
    groups = symmetric_groups(inputs.symmetry)
    if channel_groups is None:
        channel_groups = fusion_channel_groups(features_path)
    with open_features(features_path) as cache:
        if cache.grid is None:
            raise ValueError(f"{features_path}: no 'grid' attribute (token grid) to match on")
        encoder_meta = cache.meta.get("encoder") or {}
        keypoints = cache.meta.get("keypoint_geometry", "letterbox")
        if keypoints != "letterbox":
            raise ValueError(f"{features_path}: keypoint geometry {keypoints!r} is not supported")
        protocol = str(cache.meta.get("protocol", "vislaw"))
        # The grid tiles the whole letterboxed square, so the original -> grid mapping does not
        # depend on the input size; the spec's size is used when recorded, for the record.
        input_size = int(encoder_meta.get("input_size") or cache.grid[1])
        queries = build_queries(pairs, cache.ids, groups, source=str(features_path))
        features = cache.features
        if features.size * features.dtype.itemsize <= inputs.memory_gb * 2**30:
            features = features[()]  # decompress every chunk once; both passes from memory
        predicted = predict_keypoints(
            features,
            cache.grid,
            input_size,
            queries,
            inputs.settings,
            channel_groups=channel_groups,
            block_size=inputs.block_size,
            progress=progress,
        )
    name = encoder or encoder_meta.get("name") or features_path.stem
    row = make_row(name, predicted, queries, inputs)
    row["protocol"] = protocol
    return row


def run_c_score(
    inputs: ScoreInputs,
    features: str | Path,
    out: str | Path,
    *,
    encoder: str | None = None,
    member_features: Sequence[str | Path] = (),
    spec: EncoderSpec | None = None,
    features_settings: FeaturesSettings | None = None,
) -> dict[str, Any]:
    """Step ``c_score``: one encoder's row, written to ``out`` (CSV, atomic). A fusion's member
    files (``member_features``, in order) give the channel counts that split the fused vector,
    so each member is L2-normalised on its own before the cosine; without them the counts come
    from the fusion file's meta.

    ``spec`` (and ``features_settings``): the config's encoder and ``features`` section; the
    file's record must match them (and each member file its member's spec), else the step
    refuses naming the file and the key rather than score another encoder's features."""
    if spec is not None:
        from vislaw.io.feature_records import check_features_file

        check_features_file(features, spec, features_settings)
        for path, member in zip(member_features, spec.members, strict=False):
            check_features_file(path, member, features_settings)
    groups = [feature_channels(p) for p in member_features] or None
    row = score_features(features, inputs, encoder=encoder, channel_groups=groups)
    row["features_sha256"] = file_sha256(features)  # the row records the file it scored
    write_csv(out, [row])
    return row

"""Measure how far the two feature protocols (``vislaw``, ``paper``) are apart, family by family.

For each encoder of a config (the demo's tiny twins by default) the same weights are built under
both protocols and fed the same images. Reported, as rel = |a - b| / |b| with b the paper side:

- ``pixels``: the MLLM input pixels (geometry: letterbox vs the authors' crop / stretch);
- ``model``: the features of one and the same pixel tensor (conditioning, noise, channel order);
- ``model_same_order``: the same after putting the paper features in our channel order (what
  conditioning, noise and latent shift alone change);
- ``end_to_end``: the MLLM features from the images (both of the above);
- ``c_pixels``: the C-score input pixels (letterbox + own normalisation vs stretch + [-1, 1]);
- ``permuted``: whether the channel layouts differ (a pure column permutation).

With ``--spair-root`` (an SPair-71k-layout folder, e.g. the demo's synthetic one) it also
computes each encoder's C score (per-image PCK@0.10 x 100) under both protocols.

CLI: ``python -m vislaw.studies.protocol_effects --config config/demo.yaml``.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vislaw.encoders.base import EncoderSpec

COLUMNS = (
    "encoder",
    "family",
    "pixels",
    "model",
    "model_same_order",
    "end_to_end",
    "c_pixels",
    "permuted",
)


def sample_images(n: int = 4, seed: int = 0) -> list[Any]:
    """Smooth random pictures of varied aspect ratios (landscape and portrait)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for i in range(n):
        coarse = rng.integers(0, 255, size=(5, 7, 3), dtype=np.uint8)
        size = (120, 80) if i % 2 == 0 else (72, 108)
        images.append(Image.fromarray(coarse).resize(size, Image.Resampling.BILINEAR))
    return images


def _rel(a: Any, b: Any) -> float:
    import torch

    if isinstance(a, list):  # a fusion's per-member pixels
        a, b = torch.cat([x.flatten() for x in a]), torch.cat([x.flatten() for x in b])
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def measure(spec: EncoderSpec, images: Sequence[Any]) -> dict[str, Any]:
    """One row of :data:`COLUMNS` for ``spec`` (its protocol is replaced by both)."""
    from vislaw.encoders.registry import build_encoder

    ours = build_encoder(_with_protocol(spec, "vislaw"))
    theirs = build_encoder(_with_protocol(spec, "paper"))
    from vislaw.encoders.diffusion import swap_s2d_order

    pixels = theirs.preprocess(images)
    a, b = ours.encode(pixels), theirs.encode(pixels)
    permuted = ours.feature_layout() != theirs.feature_layout()
    return {
        "encoder": spec.name,
        "family": spec.family,
        "pixels": _rel(ours.preprocess(images), pixels),
        "model": _rel(a, b),
        "model_same_order": _rel(a, swap_s2d_order(b)) if permuted else _rel(a, b),
        "end_to_end": _rel(ours.encode_images(images), theirs.encode_images(images)),
        "c_pixels": _rel(ours.preprocess(images, "c_score"), theirs.preprocess(images, "c_score")),
        "permuted": permuted,
    }


def _with_protocol(spec: EncoderSpec, protocol: str) -> EncoderSpec:
    members = tuple(_with_protocol(m, protocol) for m in spec.members)
    return dataclasses.replace(spec, protocol=protocol, members=members)


def c_scores(spec: EncoderSpec, spair_root: str | Path, symmetry: str) -> dict[str, float]:
    """C (per-image PCK@0.10 x 100) of ``spec`` under both protocols on an SPair-layout folder."""
    from vislaw.features import extract_features, fuse_feature_files, spair_image_ids
    from vislaw.scores.correspondence.score import ScoreInputs, score_features

    ids = spair_image_ids(spair_root)
    inputs = ScoreInputs(spair_root=spair_root, symmetry=symmetry)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for protocol in ("vislaw", "paper"):
            target = _with_protocol(spec, protocol)
            path = Path(tmp) / f"{protocol}.h5"
            if target.members:
                parts = [Path(tmp) / f"{protocol}_{m.name}.h5" for m in target.members]
                for member, part in zip(target.members, parts, strict=True):
                    extract_features(member, Path(spair_root) / "JPEGImages", ids, part)
                fuse_feature_files(parts, path, spec=target)
            else:
                extract_features(target, Path(spair_root) / "JPEGImages", ids, path)
            row = score_features(path, inputs, progress=False)
            out[f"c_{protocol}"] = 100 * float(row["pck10_image"])
    return out


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_protocol_effects(
    specs: Sequence[EncoderSpec],
    n_images: int,
    *,
    spair_root: str | Path | None = None,
    symmetry: str = "synthetic",
) -> list[dict[str, Any]]:
    """One row per encoder: how the vislaw and paper protocols differ on ``n_images`` sample
    images, and with ``spair_root`` the C score under each."""
    images = sample_images(n_images)
    rows = []
    for spec in specs:
        row = measure(spec, images)
        if spair_root:
            row.update(c_scores(spec, spair_root, symmetry))
        rows.append(row)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.config import ConfigError
    from vislaw.encoders.registry import encoder_spec
    from vislaw.pipeline import load_checked_config

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.studies.protocol_effects",
        description="Measure the vislaw vs paper feature protocols per encoder (markdown table).",
    )
    parser.add_argument("--config", default="config/demo.yaml", help="config naming encoders")
    parser.add_argument("--encoders", nargs="+", help="encoder names (default: all)")
    parser.add_argument("--images", type=int, default=4, help="sample images per encoder")
    parser.add_argument("--spair-root", help="also compute C under both protocols here")
    parser.add_argument("--symmetry", default="synthetic", choices=("spair", "synthetic"))
    args = parser.parse_args(argv)
    _, specs = load_checked_config(args.config)
    try:
        chosen = [encoder_spec(specs, name, args.config) for name in args.encoders or specs]
    except ConfigError as err:
        parser.error(str(err))
    rows = run_protocol_effects(
        chosen, args.images, spair_root=args.spair_root, symmetry=args.symmetry
    )
    print(markdown(rows))


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

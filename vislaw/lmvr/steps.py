"""LMVR's pipeline steps, one ``run_<step>`` each (rules lmvr_images, lmvr, lmvr_probe).

Each takes settings objects (vislaw.lmvr.settings) and paths; the workflow scripts
(workflow_scripts/lmvr*.py) and the CLI (``python -m vislaw.lmvr``) only gather those and call
these. Light on purpose: torch, the model and scikit-learn load in the step that needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vislaw.layout import LMVR_FEATURES
from vislaw.lmvr.settings import LmvrSettings, SyntheticImages


def run_lmvr_images(spec: SyntheticImages, seed: int, output: str | Path) -> int:
    """Rule ``lmvr_images``: the demo's labelled shape-class ImageFolder (``lmvr.synthetic``,
    drawn from the config's ``seed``) written to ``output``; returns the number of images."""
    from vislaw.data.imagefolder import write_shape_folder

    items = write_shape_folder(output, spec.classes, spec.per_class, spec.image_size, seed)
    print(f"wrote {len(items)} images in {len(spec.classes)} classes to {output}")
    return len(items)


def run_lmvr(
    settings: LmvrSettings,
    encoder: str,
    stage2_dir: str | Path,
    image_folder: str | Path,
    features_dir: str | Path,
    maps_dir: str | Path,
    *,
    device: str,
) -> dict[str, Any]:
    """Rule ``lmvr``: one encoder's LMVR and baseline features (clean + corrupted) into
    ``features_dir`` and its token maps into ``maps_dir`` (vislaw.lmvr.extract)."""
    from vislaw.lmvr.extract import extract_encoder

    summary = extract_encoder(
        stage2_dir, image_folder, settings, features_dir, maps_dir, device=device
    )
    print(f"{encoder}: {summary}")
    return summary


def run_lmvr_probe(
    settings: LmvrSettings,
    lmvr_dir: str | Path,
    output: str | Path,
    encoders: Sequence[str] | None = None,
) -> list[dict[str, object]]:
    """Rule ``lmvr_probe``: linear probes on the features under ``lmvr_dir/features/<encoder>``
    of ``encoders`` (default: ``lmvr.encoders``), one CSV ``output``; returns its rows."""
    from vislaw.lmvr.probe import encoder_rows, write_probe_csv

    rows: list[dict[str, object]] = []
    for encoder in encoders or settings.encoders:
        rows += encoder_rows(
            encoder,
            Path(lmvr_dir) / LMVR_FEATURES / encoder,
            settings.conditions,
            settings.condition_names,
            settings.probe,
        )
    write_probe_csv(rows, output)
    print(f"wrote {len(rows)} rows to {output}")
    return rows

"""Command line of LMVR (what the rules run, usable by hand).

    python -m vislaw.lmvr images  --config config/demo.yaml            # the synthetic ImageFolder
    python -m vislaw.lmvr extract --config config/demo.yaml --encoder clip224 \\
        --stage2 results/demo/stage2/clip224
    python -m vislaw.lmvr probe   --config config/demo.yaml

Paths default to the config's layout (docs/lmvr.md); ``--out-dir`` moves all outputs.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from vislaw.layout import LMVR_FEATURES, LMVR_MAPS, LMVR_PROBE, RunLayout
from vislaw.lmvr.settings import LmvrSettings, SyntheticImages, require_image_folder


def lmvr_dir(config: dict) -> Path:
    return Path(RunLayout.from_config(config).lmvr_dir)


def _images(args: argparse.Namespace, config: dict) -> int:
    from vislaw.lmvr.steps import run_lmvr_images

    out = Path(args.out) if args.out else require_image_folder(config)
    run_lmvr_images(SyntheticImages.from_config(config), config["seed"], out)
    return 0


def _extract(args: argparse.Namespace, config: dict) -> int:
    from vislaw.host import pick_device
    from vislaw.jobs import apply_runtime_settings
    from vislaw.lmvr.steps import run_lmvr

    apply_runtime_settings(config, args.threads)
    out = Path(args.out_dir) if args.out_dir else lmvr_dir(config)
    stage2 = Path(args.stage2 or RunLayout.from_config(config).stage_dir("stage2", args.encoder))
    run_lmvr(
        LmvrSettings.from_config(config),
        args.encoder,
        stage2,
        Path(args.image_folder) if args.image_folder else require_image_folder(config),
        out / LMVR_FEATURES / args.encoder,
        out / LMVR_MAPS / args.encoder,
        device=args.device or pick_device(config),
    )
    return 0


def _probe(args: argparse.Namespace, config: dict) -> int:
    from vislaw.lmvr.steps import run_lmvr_probe

    root = Path(args.out_dir) if args.out_dir else lmvr_dir(config)
    run_lmvr_probe(
        LmvrSettings.from_config(config), root, args.out or root / LMVR_PROBE, args.encoders
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from vislaw.config import ConfigError
    from vislaw.encoders.registry import encoder_spec
    from vislaw.pipeline import load_checked_config

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.lmvr",
        description="LMVR: MLLM hidden-state features, linear probes under corruptions, and "
        "token-level maps, for the encoders of a workflow config (docs/lmvr.md).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    images = sub.add_parser("images", help="write the synthetic shape-class ImageFolder")
    extract = sub.add_parser("extract", help="one encoder's LMVR + baseline features and maps")
    probe = sub.add_parser("probe", help="linear probes on the extracted features -> probe.csv")
    for p in (images, extract, probe):
        p.add_argument("--config", required=True, help="workflow config YAML")
    images.add_argument("--out", help="folder to write (default: the config's image folder)")
    extract.add_argument("--encoder", required=True, help="encoder name in the config")
    extract.add_argument("--stage2", help="stage-2 folder (default: <run>/stage2/<encoder>)")
    extract.add_argument("--image-folder", help="ImageFolder (default: the config's)")
    extract.add_argument("--out-dir", help="instead of <run>/lmvr")
    extract.add_argument("--device", help="cpu / cuda (default: the config's device)")
    extract.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    probe.add_argument("--out-dir", help="the lmvr folder holding features/ (default <run>/lmvr)")
    probe.add_argument("--encoders", nargs="+", help="default: lmvr.encoders")
    probe.add_argument("--out", help="CSV path (default: <lmvr folder>/probe.csv)")
    args = parser.parse_args(argv)
    config, specs = load_checked_config(args.config)
    if args.command == "extract":
        try:
            encoder_spec(specs, args.encoder, args.config)
        except ConfigError as error:
            parser.error(str(error))
    handler = {"images": _images, "extract": _extract, "probe": _probe}[args.command]
    return handler(args, config)

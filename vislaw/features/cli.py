"""``python -m vislaw.features``: one encoder's features of the configured image set, in one
process or as one rank's share (the per-GPU processes of extract_features_on_ranks start it).
An entry point: it checks the config (vislaw.pipeline) and sets the job's runtime (vislaw.jobs),
which the library below it may not import (docs/architecture.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from vislaw.data.settings import DataSettings
from vislaw.features import FeaturesSettings, run_features


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.config import ConfigError
    from vislaw.encoders.registry import encoder_spec
    from vislaw.host import pick_device
    from vislaw.jobs import apply_runtime_settings
    from vislaw.pipeline import load_checked_config

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.features",
        description="Encode the configured image set with one encoder into an HDF5 file.",
    )
    parser.add_argument("--config", required=True, help="workflow config YAML")
    parser.add_argument("--encoder", required=True, help="encoder name from the config")
    parser.add_argument("--out", required=True, help="output .h5 path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stage1", help="stage-1 folder whose trained encoder tensors to use (ConvLLaVA recipe)"
    )
    parser.add_argument("--shard", help="R/N: encode only rank R's share of N (see shard_ids)")
    args = parser.parse_args(argv)
    config, specs = load_checked_config(args.config)
    try:
        spec = encoder_spec(specs, args.encoder, args.config)
    except ConfigError as err:
        parser.error(str(err))
    if spec.family == "fusion":
        parser.error("fusions are made from their members' files (see rule fuse_features)")
    apply_runtime_settings(config, args.threads)
    shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
    run_features(
        FeaturesSettings.from_config(config),
        DataSettings.from_config(config),
        spec,
        args.out,
        device=pick_device(config),
        stage1=args.stage1,
        shard=shard,
    )

"""``python -m vislaw.scores.correspondence``: the C score of one encoder's cached features on
SPair-71k (one CSV row), without a workflow config."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence

from vislaw.config import schema_node
from vislaw.scores.settings import CScoreSettings
from vislaw.sections import section_values


def main(argv: Sequence[str] | None = None) -> None:
    """The options' defaults are the schema's ``c_score`` defaults (their one home); torch and
    the matching code are imported after parsing, so ``--help`` stays light."""
    defaults = CScoreSettings.from_mapping(section_values("c_score", {}))
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.scores.correspondence",
        description="C score of one encoder's cached features on SPair-71k (one CSV row).",
    )
    parser.add_argument("--features", required=True, help="feature HDF5 file (rule features)")
    parser.add_argument("--spair-root", required=True, help="folder holding PairAnnotation/ ...")
    parser.add_argument("--split", default="test", choices=("trn", "val", "test"))
    parser.add_argument("--out", required=True, help="output CSV (one row)")
    parser.add_argument("--encoder", help="row name (default: the file's encoder name)")
    parser.add_argument(
        "--matcher", default=defaults.matcher, choices=schema_node("c_score.matcher")["enum"]
    )
    parser.add_argument("--window", type=int, default=defaults.window, help="soft-argmax radius")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--upsample", type=int, default=defaults.upsample)
    parser.add_argument("--alphas", type=float, nargs="+", default=list(defaults.alphas))
    parser.add_argument(
        "--symmetry",
        default="spair",
        choices=("spair", "synthetic"),
        help="symmetric keypoint groups: SPair-71k's, or the demo generator's templates",
    )
    parser.add_argument(
        "--member-features",
        nargs="+",
        help="a fusion's member files, in order (default: found from the fusion file's meta)",
    )
    parser.add_argument(
        "--block-size", type=int, default=defaults.block_size, help="images read per block"
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=defaults.memory_gb,
        help="read feature files up to this size once into memory (else stream twice)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    import torch

    from vislaw.scores.correspondence.matching import MatchSettings
    from vislaw.scores.correspondence.score import ScoreInputs, run_c_score

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        settings = MatchSettings(args.matcher, args.window, args.temperature, args.upsample)
    except ValueError as err:
        parser.error(str(err))
    inputs = ScoreInputs(
        args.spair_root,
        args.split,
        settings,
        tuple(args.alphas),
        args.symmetry,
        args.block_size,
        args.memory_gb,
    )
    row = run_c_score(
        inputs,
        args.features,
        args.out,
        encoder=args.encoder,
        member_features=args.member_features or (),
    )
    with contextlib.suppress(KeyError):
        print(f"{row['encoder']}: PCK@0.10 per image {100 * row['pck10_image']:.2f}")

"""CLI: ``python -m vislaw.vlm import-llava --stage 1 --src mm_projector.bin --config
config.yaml --encoder clip336 --out results/paper/stage1/clip336`` (vislaw.vlm.llava)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.vlm",
        description="Import a released LLaVA-format checkpoint as a vislaw stage folder.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import-llava", help="mm_projector.bin (stage 1) or a LLaVA folder")
    imp.add_argument("--stage", type=int, choices=[1, 2], required=True)
    imp.add_argument("--src", required=True, help="mm_projector.bin, or the stage-2 folder")
    imp.add_argument("--config", required=True, help="workflow config naming the encoder")
    imp.add_argument("--encoder", required=True, help="encoder name in the config")
    imp.add_argument("--out", required=True, help="stage folder to write")
    imp.add_argument("--llm", help="stage 1: LLM id/folder (default: the config's llm.model_id)")
    imp.add_argument(
        "--protocol",
        choices=["paper", "vislaw"],
        default="paper",
        help="feature protocol the checkpoint was trained on (the authors' releases: paper)",
    )
    imp.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="accept an encoder whose protocol differs from --protocol (channel layout must agree)",
    )
    args = parser.parse_args(argv)
    # imported after parsing: --help answers without loading torch (python -m vislaw vlm --help)
    from vislaw.config import load_config
    from vislaw.encoders.registry import encoder_spec, resolve_encoders
    from vislaw.train.settings import LlmSettings, TrainSettings
    from vislaw.vlm.llava import run_import_llava

    config = load_config(args.config)
    out = run_import_llava(
        TrainSettings.from_config(config),
        LlmSettings.from_config(config),
        encoder_spec(resolve_encoders(config), args.encoder, args.config),
        args.src,
        args.out,
        args.stage,
        llm=args.llm,
        protocol=args.protocol,
        allow_protocol_mismatch=args.allow_protocol_mismatch,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

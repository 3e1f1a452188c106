"""CLI: ``python -m vislaw.prepare {data,models,mark,status} --config config.yaml``.

The workflow's ``prepare`` target runs the same functions (rules/prepare.smk); this CLI is for
preparing one source or repo by hand, and for asking what is still missing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.prepare",
        description="Download, verify and unpack the real data and weights a config needs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    data = sub.add_parser("data", help="download and unpack data.sources entries")
    data.add_argument("--source", action="append", help="source name (repeatable; default all)")
    models = sub.add_parser("models", help="download the Hub repos the config loads")
    models.add_argument("--repo", action="append", help="repo id (repeatable; default all)")
    mark = sub.add_parser("mark", help="mark a manual source as in place")
    mark.add_argument("--source", required=True)
    sub.add_parser("status", help="list what is missing (exit 1 if anything is)")
    for p in (data, models, mark, sub.choices["status"]):
        p.add_argument("--config", required=True, help="workflow config YAML")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare import hub, sources, status

    args = _parser().parse_args(argv)
    config, specs = load_checked_config(args.config)
    try:
        if args.command == "data":
            sources.run_prepare_data(config, args.source)
        elif args.command == "models":
            hub.run_prepare_models(config, specs, only=args.repo, require_home=True)
        elif args.command == "mark":
            print(sources.mark_manual_source(config, args.source))
        else:
            gone = status.missing(status.all_requirements(config, specs))
            if gone:
                print(status.missing_message(gone, [args.config]), file=sys.stderr)
                return 1
            print("everything this config needs is prepared")
    except (hub.PrepareError, OSError, RuntimeError) as err:
        print(f"vislaw prepare: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

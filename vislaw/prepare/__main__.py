"""CLI: ``python -m vislaw.prepare {data,models,mark,list,status} --config config.yaml``.

The workflow's ``prepare`` target runs the same functions (rules/prepare.smk); this CLI is for
preparing one source or repo by hand, and for asking what is still missing.
"""

from __future__ import annotations

import argparse
import json
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
    listing = sub.add_parser("list", help="every item the config needs, prepared or not")
    listing.add_argument("--json", action="store_true", help="one JSON object per item, a list")
    state = sub.add_parser("status", help="list what is missing (exit 1 if anything is)")
    for p in (data, models, mark, listing, state):
        p.add_argument("--config", required=True, help="workflow config YAML")
    for p in (listing, state):
        p.add_argument("--targets", nargs="+", help="stages (default: the config's targets)")
    return parser


def _targets(args: argparse.Namespace, config: dict) -> list[str]:
    return list(args.targets or config["targets"])


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
        elif args.command == "list":
            rows = status.for_targets(config, status.items(config, specs), _targets(args, config))
            if args.json:
                print(json.dumps([r.as_dict() for r in rows], indent=1))
            else:
                print(status.items_table(rows))
        else:
            for name in status.unverified(config):
                print(
                    f"warning: data source '{name}' is UNVERIFIED (no length from the server, no "
                    "sha256 pinned): pin the publisher's hash in data.sources to check it",
                    file=sys.stderr,
                )
            rows = status.for_targets(config, status.items(config, specs), _targets(args, config))
            gone = status.missing([r.requirement() for r in rows])
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

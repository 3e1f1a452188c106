"""Run under torchrun by tests/unit/core/test_multirank.py: stage 1 for each (config, out) pair in
turn, in the same ranks, so the interpreter and process-group start is paid once for all modes."""

from __future__ import annotations

import sys

from vislaw.config import load_config
from vislaw.train.engine import close_distributed
from vislaw.train.runner import train_stage


def main(args: list[str]) -> None:
    for pair in args:
        config_path, out = pair.split("=", 1)
        train_stage(load_config(config_path), 1, "clip_t", out)
    close_distributed()


if __name__ == "__main__":
    main(sys.argv[1:])

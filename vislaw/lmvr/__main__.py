"""``python -m vislaw.lmvr``: see :mod:`vislaw.lmvr.cli`."""

from vislaw.config import run_cli
from vislaw.lmvr.cli import main

raise SystemExit(run_cli(main))

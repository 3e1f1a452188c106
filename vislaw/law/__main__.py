"""``python -m vislaw.law``: see :mod:`vislaw.law.cli`."""

from vislaw.config import run_cli
from vislaw.law.cli import main

raise SystemExit(run_cli(main))

"""``python -m vislaw.scores.correspondence`` (vislaw.scores.correspondence.cli)."""

from vislaw.config import run_cli
from vislaw.scores.correspondence.cli import main

raise SystemExit(run_cli(main))

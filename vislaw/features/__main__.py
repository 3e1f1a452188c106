"""``python -m vislaw.features`` (vislaw.features.cli)."""

from vislaw.config import run_cli
from vislaw.features.cli import main

raise SystemExit(run_cli(main))

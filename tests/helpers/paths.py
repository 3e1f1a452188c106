"""The checkout's folders, found once from this file: a test's own ``__file__`` depth depends on
the folder it sits in (tests/unit/<package>/, tests/workflow/), these do not."""

from __future__ import annotations

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
"""tests/: put it on ``PYTHONPATH`` for a subprocess that imports ``helpers``."""
ROOT = TESTS.parent
"""The repository root (Snakefile, config/, vislaw/)."""
DATA = TESTS / "data"
"""Checked-in test data (tests/data/README.md says where each file comes from)."""
BIN = Path(sys.executable).parent
"""The venv's bin/ (snakemake, torchrun): tests run its tools, not whatever PATH finds."""

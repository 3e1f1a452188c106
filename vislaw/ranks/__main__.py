"""``python -m vislaw.ranks FILE``: what every rank process runs (:func:`vislaw.ranks.rank_program`).

An entry module of its own, so the launcher's library code (:mod:`vislaw.ranks`, in the core
layer) holds no ``__main__`` block: the structure test places entry points above every layer.
"""

from __future__ import annotations

import sys

from vislaw.ranks import run_call

if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m vislaw.ranks CALL_FILE (a call saved by call_file)")
    run_call(sys.argv[1])

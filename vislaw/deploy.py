"""Where the conda envs find vislaw: the checkout, named by the ``VISLAW_ROOT`` variable.

Snakemake copies each ``envs/*.yaml`` into its conda prefix (``<prefix>/<hash>.yaml``) and conda
runs pip from that copy's folder, so a relative pip line (``-e ..``) points somewhere else on
every machine. The env files therefore say ``-e ${VISLAW_ROOT}[extra]``: pip expands ``${VAR}``
in the requirements file conda writes, and the Snakefile exports the variable before any env
is built, from the folder it lives in.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_VARIABLE = "VISLAW_ROOT"


def export_package_root(basedir: str | Path) -> Path:
    """Set ``VISLAW_ROOT`` for conda's pip (and the jobs) to the checkout that holds the
    Snakefile, unless the user set it; fail early when it names no vislaw checkout."""
    root = Path(os.environ.get(ROOT_VARIABLE) or basedir).resolve()
    if not (root / "pyproject.toml").is_file() or not (root / "vislaw").is_dir():
        raise RuntimeError(
            f"{ROOT_VARIABLE}={root} is not a vislaw checkout (no pyproject.toml and vislaw/ "
            "there): the conda envs install vislaw from it; unset it or point it at the repo"
        )
    os.environ[ROOT_VARIABLE] = str(root)
    return root

"""Top floor of the library: the config as the workflow sees it.

``load_checked_config`` is what the Snakefile and every entry point call: the schema check
(vislaw.config) plus the checks that need the encoder zoo (fusion members, token grids) and
the training recipes (an encoder must support the recipe it is given), then the semantic checks
of vislaw.checks (what the config and the models' config files tell before the first job).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vislaw.checks import check_semantics
from vislaw.config import ConfigError, check_config, load_config
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import resolve_encoders
from vislaw.host import check_folders
from vislaw.train.recipes import check_recipes


def load_checked_config(
    source: str | Path | Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, EncoderSpec]]:
    """Config (with defaults) and the resolved encoder specs; raises ConfigError naming the key."""
    config = check_config(source) if isinstance(source, Mapping) else load_config(source)
    specs = resolve_encoders(config)
    check_recipes(config, specs)
    check_semantics(config, specs)  # grids, layers, timesteps, batches (vislaw.checks)
    check_folders(config)  # folder keys that name files (vislaw.host)
    return config, specs


def encoder_spec(
    specs: Mapping[str, EncoderSpec], name: str, source: str = "the config"
) -> EncoderSpec:
    """The spec of encoder ``name``; a ConfigError naming the configured encoders otherwise.

    The one check every entry point that takes an encoder name makes (CLIs, workflow scripts,
    the lmms-eval plugin), so the message is the same wherever a name is mistyped.
    """
    if name not in specs:
        raise ConfigError("encoders", f"encoder {name!r} is not in {source} ({sorted(specs)})")
    return specs[name]

"""What a family's semantic checks (``VisionEncoder.check_spec``) read: the model's own config
files, offline only, and the index and grid-fact comparisons several families share.

These used to live in ``vislaw.checks``, which dispatched on family names; the families now
check themselves (one home per family fact, issue 27), and this module is what they share. A
fact that is not available offline is not guessed: the check is skipped and the job's own
check applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.loading import model_type_problem

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec


def cached_json(model_id: str | None, filename: str) -> dict[str, Any] | None:
    """``filename`` of a local model folder or of a hub id already in the HF cache, else None
    (never downloads: these checks run in the Snakefile, possibly without network)."""
    if not model_id:
        return None
    local = Path(model_id) / filename
    if local.is_file():
        return _read_json(local)
    if Path(model_id).is_dir() or model_id.count("/") > 1:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        return None
    try:
        path = try_to_load_from_cache(model_id, filename)
    except Exception:  # noqa: BLE001 - an id the hub would reject: the job reports it
        return None
    return _read_json(Path(path)) if isinstance(path, str) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def checkpoint_config(spec: EncoderSpec) -> dict[str, Any] | None:
    """A real checkpoint's config.json when local or cached (None for twins and unknowns)."""
    if spec.tiny is not None:
        return None
    return cached_json(spec.model_id, "config.json")


def vision_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The vision tower's part of a config (CLIP/SigLIP full-model configs nest it)."""
    nested = config.get("vision_config")
    return nested if isinstance(nested, Mapping) else config


def check_index(key: str, index: int, count: int, what: str) -> None:
    """``index`` must address one of ``count`` items, Python style (negative from the end)."""
    if not -count <= index < count:
        raise ConfigError(
            key, f"{index} is out of range: {what} has {count} (valid {-count}..{count - 1})"
        )


def check_checkpoint_facts(spec: EncoderSpec, facts: Mapping[str, tuple[str, int]]) -> None:
    """A real checkpoint's config.json (local or cached) must be of a model_type the family
    loads and agree with the entry's grid facts: ``facts`` maps a config.json key to (the entry
    key, the value the grid arithmetic uses). A key the file does not write is not guessed."""
    config = checkpoint_config(spec)
    if config is None:
        return
    key = f"encoders.{spec.name}"
    model_type = config.get("model_type")
    problem = model_type_problem(spec.family, model_type, str(spec.model_id))
    if problem:
        raise ConfigError(f"{key}.family", problem)
    tower = vision_config(config)
    for name, (entry_key, used) in facts.items():
        found = tower.get(name)
        if isinstance(found, int) and found != used:
            raise ConfigError(
                f"{key}.{entry_key}",
                f"{used} disagrees with {spec.model_id}'s config.json {name}: {found}",
            )

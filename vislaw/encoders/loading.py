"""Load a real checkpoint into a family only if every tensor the model needs is the checkpoint's.

Why: transformers and diffusers load any checkpoint into any class. Every tensor the checkpoint
lacks (MISSING) is randomly initialised, every one the class lacks (UNEXPECTED) is dropped, and a
tensor of another shape (MISMATCHED) is re-initialised or fails with a bare library error; the
only trace of the first two is a log report. An AIMv2 checkpoint under ``family: siglip`` thus
gave random features that were scored as a real encoder, with rc 0 (issue 22). Here the loading
report is a refusal that names the encoder, the checkpoint, the family and the tensors.

Which checkpoints a family takes is the family class's own fact (vislaw.encoders.base):
``model_types`` (the ``model_type`` of a transformers ``config.json``) and ``unused_heads``
(tensors a checkpoint may hold that the family's class does not load: heads the feature does not
use, as the text tower of a full CLIP when only its vision tower is loaded). This module reads
them from the registry's classes (:func:`vislaw.encoders.base.registered_families`), so a new
family declares them in its module and nowhere else. docs/refuses.md lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.base import registered_families

if TYPE_CHECKING:
    import torch

SHOWN = 5  # tensors named in a refusal (the count says how many more)


def model_types() -> dict[str, frozenset[str]]:
    """{family: the config.json model_types it loads} of every registered family that declares
    some (a family with none, the diffusers ones, has no model_type to check)."""
    return {name: cls.model_types for name, cls in registered_families().items() if cls.model_types}


def families_for(model_type: str) -> list[str]:
    """The families whose declared ``model_types`` include ``model_type``."""
    return sorted(family for family, types in model_types().items() if model_type in types)


def model_type_problem(family: str, model_type: str | None, source: str) -> str | None:
    """Why ``source`` (a checkpoint whose config says ``model_type``) does not fit ``family``,
    naming the family that would fit; None when it fits, when the family declares no
    model_types, or when the config writes no model_type (not guessed: the tensors are still
    checked)."""
    declared = model_types()
    handled = declared.get(family)
    if handled is None or model_type is None or model_type in handled:
        return None
    fits = families_for(model_type)
    hint = (
        f"use family: {fits[0]}"
        if fits
        else f"no dedicated family handles {model_type} ("
        + ", ".join(f"{f}: {'/'.join(sorted(t))}" for f, t in sorted(declared.items()))
        + "); use family: hf_auto, which loads any transformers vision backbone"
    )
    return (
        f"checkpoint {source} has model_type {model_type!r}; family '{family}' handles "
        f"{'/'.join(sorted(handled))}; {hint}"
    )


def _named(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return f"{list(keys[:SHOWN])}{more}"


def _allowed(key: str, patterns: Iterable[str]) -> bool:
    return any(re.match(pattern, key) for pattern in patterns)


def loading_problems(info: dict[str, Any], family: str) -> list[str]:
    """The MISSING, UNEXPECTED (outside the family class's ``unused_heads``) and MISMATCHED
    tensors of a ``from_pretrained(..., output_loading_info=True)`` report, one line each."""
    known = registered_families()
    allowed = known[family].unused_heads if family in known else ()
    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(k for k in info.get("unexpected_keys") or () if not _allowed(k, allowed))
    mismatched = sorted(
        f"{key} (checkpoint {tuple(found)}, model {tuple(wanted)})"
        for key, found, wanted in info.get("mismatched_keys") or ()
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} MISSING (would be random): {_named(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} UNEXPECTED (would be dropped): {_named(unexpected)}")
    if mismatched:
        problems.append(f"{len(mismatched)} size-MISMATCHED: {_named(mismatched)}")
    problems.extend(str(msg) for msg in info.get("error_msgs") or ())
    return problems


def checkpoint_model_type(model_id: str, subfolder: str | None = None) -> str | None:
    """``model_type`` of a transformers checkpoint's config.json (from the folder or hub cache
    that ``from_pretrained`` reads), None if the config has none."""
    from transformers import PreTrainedConfig

    kwargs = {"subfolder": subfolder} if subfolder else {}
    config, _ = PreTrainedConfig.get_config_dict(model_id, **kwargs)
    model_type = config.get("model_type")
    return str(model_type) if model_type is not None else None


def load_checked(
    model_class: Any,
    model_id: str | None,
    *,
    family: str,
    owner: str,
    subfolder: str | None = None,
    trust_remote_code: bool = False,
) -> torch.nn.Module:
    """``model_class.from_pretrained(model_id)`` (transformers or diffusers), refused with a
    ConfigError on ``encoders.<owner>.model_id`` (``.family`` for a model_type the family does
    not handle) unless every tensor the model has came from the checkpoint with its shape.
    ``trust_remote_code`` is passed on only when true (a config entry asked for it)."""
    if model_id is None:
        raise ConfigError(f"encoders.{owner}.model_id", "a real checkpoint needs a model_id")
    source = f"{model_id}/{subfolder}" if subfolder else model_id
    if family in model_types():
        problem = model_type_problem(family, checkpoint_model_type(model_id, subfolder), source)
        if problem:
            raise ConfigError(f"encoders.{owner}.family", problem)
    kwargs: dict[str, Any] = {"output_loading_info": True, "ignore_mismatched_sizes": True}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    model, info = model_class.from_pretrained(model_id, **kwargs)
    problems = loading_problems(info, family)
    if problems:
        raise ConfigError(
            f"encoders.{owner}.model_id",
            f"checkpoint {source} does not fit {model_class.__name__} (family '{family}'): "
            + "; ".join(problems),
        )
    return model

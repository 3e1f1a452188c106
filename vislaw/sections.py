"""Typed settings: one frozen dataclass per config section, built from the checked config.

The JSON schema (``vislaw/schema/config.schema.yaml``) is the single home of every default and
constraint: ``check_config`` validates a config and fills the schema's defaults in. A settings
model is then a typed *view* of one section: its fields are the section's keys, it holds no
defaults of its own (so the two cannot drift), and entry points receive these objects, never raw
dicts. ``tests/unit/core/test_sections.py`` fails when a model and its schema section disagree.

How to write one::

    @dataclass(frozen=True)
    class LawSettings(Section):
        SECTION: ClassVar[str] = "law"
        degree: int
        ...

    settings = LawSettings.from_config(checked_config)

A nested object section becomes a nested model (its field annotated with the model class; built
recursively); lists become tuples. An optional object section (one whose presence means
something, e.g. ``data.synthetic``: no default, not required) is a field annotated
``Model | None``: None when the config lacks it. Fields that a model derives (not config keys) are listed in
``DERIVED`` and may carry defaults. Add the defining module to :data:`SECTION_MODULES`.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from vislaw.config import ConfigError, check_section, schema_node

# Modules that define Section models: the drift test imports them all.
SECTION_MODULES: tuple[str, ...] = (
    "vislaw.law.settings",
    "vislaw.lmvr.settings",
    "vislaw.train.settings",
    "vislaw.eval.settings",
    "vislaw.data.settings",
    "vislaw.features",
    "vislaw.scores.settings",
)


def config_section(config: Mapping[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``data.synthetic``) of a checked config; ConfigError names it."""
    node: Any = config
    for part in dotted.split(".") if dotted else []:
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(dotted, "missing (was the config checked with check_config?)")
        node = node[part]
    return node


def _freeze(value: Any) -> Any:
    """Lists become tuples so a frozen model's fields are hashable and cannot be mutated."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    return value


def nested_model(hint: Any) -> tuple[type[Section] | None, bool]:
    """(the Section model a field annotation names or None, whether it is ``... | None``)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if isinstance(hint, type) and issubclass(hint, Section):
        return hint, optional
    return None, optional


@dataclasses.dataclass(frozen=True)
class Section:
    """Base of the settings models; see the module docstring."""

    SECTION: ClassVar[str] = ""
    DERIVED: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def config_fields(cls) -> list[dataclasses.Field]:
        """The fields that are config keys of the section (not derived ones)."""
        return [f for f in dataclasses.fields(cls) if f.name not in cls.DERIVED]

    @classmethod
    def from_mapping(
        cls, values: Mapping[str, Any], key: str | None = None, **derived: Any
    ) -> Self:
        """A model from one (checked, defaults-filled) section mapping; ``key`` names it in
        errors. A missing key is a ConfigError: the schema should have filled it."""
        key = key if key is not None else cls.SECTION
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for f in cls.config_fields():
            nested, optional = nested_model(hints.get(f.name))
            if f.name not in values and optional and nested is not None:
                kwargs[f.name] = None
                continue
            if f.name not in values:
                raise ConfigError(f"{key}.{f.name}" if key else f.name, "missing")
            value = values[f.name]
            if nested is not None and value is not None:
                value = nested.from_mapping(value, f"{key}.{f.name}" if key else f.name)
            kwargs[f.name] = _freeze(value)
        return cls(**kwargs, **derived)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **derived: Any) -> Self:
        """The model of ``cls.SECTION`` from a checked config (vislaw.config.check_config)."""
        return cls.from_mapping(config_section(config, cls.SECTION), cls.SECTION, **derived)

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None = None, **derived: Any) -> Self:
        """The model from a few of its keys, the schema's defaults for the others
        (:func:`section_values`): for CLIs and tests that have no whole config."""
        return cls.from_mapping(section_values(cls.SECTION, dict(values or {})), **derived)


def section_models() -> list[type[Section]]:
    """Every Section model of the library (importing :data:`SECTION_MODULES`)."""
    for name in SECTION_MODULES:
        importlib.import_module(name)
    found: list[type[Section]] = []
    pending = list(Section.__subclasses__())
    while pending:
        model = pending.pop()
        found.append(model)
        pending.extend(model.__subclasses__())
    # only the library's own models (a test may define a throwaway subclass)
    found = [m for m in found if m.__module__ in SECTION_MODULES]
    return sorted(found, key=lambda m: (m.SECTION, m.__qualname__))


def section_values(dotted: str, values: Any = None) -> Any:
    """The value of config key ``dotted`` built from ``values`` (None: nothing given), validated
    against the key's schema node and with its defaults filled in, as check_config would.

    The schema stays the one home of the defaults where there is no whole config: a CLI that
    takes a few settings as options, a test that changes one key. ConfigError names the key.
    """
    if values is None:
        node = schema_node(dotted)
        if "default" not in node:
            raise ConfigError(dotted, "not given and the schema has no default")
        values = node["default"]
    return check_section(dotted, values)

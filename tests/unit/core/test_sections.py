"""The settings models (vislaw.sections) and the schema describe the same keys: a model field
that is not a schema key, a schema key no model field reads, a default written in a model, or a
schema key with neither a default nor `required` (so a checked config may lack it) all fail."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from vislaw.config import load_config, schema
from vislaw.sections import Section, nested_model, section_models

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = [m for m in section_models() if m.SECTION]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (and a one-element ``allOf``) to the node it names."""
    while True:
        if "$ref" in node:
            target: Any = schema()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif len(node.get("allOf", [])) == 1 and "properties" not in node:
            node = {**_resolve(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


def _schema_node(dotted: str) -> dict[str, Any]:
    node = schema()
    for part in dotted.split("."):
        node = _resolve(node["properties"][part])
    return _resolve(node)


def _drift(model: type[Section], node: dict[str, Any], key: str) -> list[str]:
    """Every way ``model`` and the schema ``node`` disagree, each naming the dotted key."""
    problems: list[str] = []
    props = node.get("properties", {})
    fields = {f.name: f for f in model.config_fields()}
    hints = typing.get_type_hints(model)
    for name in sorted(set(fields) - set(props)):
        problems.append(f"{key}.{name}: a field of {model.__name__} but not a schema key")
    for name in sorted(set(props) - set(fields)):
        problems.append(f"{key}.{name}: a schema key that {model.__name__} does not read")
    required = set(node.get("required", []))
    for name in sorted(set(fields) & set(props)):
        field = fields[name]
        if (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        ):
            problems.append(f"{key}.{name}: {model.__name__} writes a default (the schema's job)")
        nested, optional = nested_model(hints.get(name))
        # an optional object section (``Model | None``) may be absent: None means "not given"
        may_be_absent = optional and nested is not None
        if "default" not in props[name] and name not in required and not may_be_absent:
            problems.append(f"{key}.{name}: neither a schema default nor required")
        if nested is not None:
            problems += _drift(nested, _resolve(props[name]), f"{key}.{name}")
    return problems


def test_there_are_section_models() -> None:
    assert TOP_LEVEL, "no Section model found (vislaw.sections.SECTION_MODULES)"


@pytest.mark.parametrize("model", TOP_LEVEL, ids=lambda m: m.SECTION)
def test_model_matches_its_schema_section(model: type[Section]) -> None:
    assert _drift(model, _schema_node(model.SECTION), model.SECTION) == []


@pytest.mark.parametrize("config_file", ["config.yaml", "config/demo.yaml"])
def test_every_model_builds_from_a_shipped_config(config_file: str) -> None:
    config = load_config(ROOT / config_file)
    for model in TOP_LEVEL:
        settings = model.from_config(config)
        assert isinstance(settings, model)


def test_drift_is_detected() -> None:
    """The checker itself: a model with an extra field, a missing key and a default fails."""

    @dataclasses.dataclass(frozen=True)
    class Broken(Section):
        SECTION: typing.ClassVar[str] = "features"
        not_a_key: int = 3
        dtype: str = "float16"

    problems = _drift(Broken, _schema_node("features"), "features")
    assert any("features.not_a_key: a field" in p for p in problems)
    assert any("features.batch_size: a schema key" in p for p in problems)
    assert any("writes a default" in p for p in problems)


def test_a_missing_key_names_it() -> None:
    @dataclasses.dataclass(frozen=True)
    class Features(Section):
        SECTION: typing.ClassVar[str] = "features"
        batch_size: int

    with pytest.raises(ValueError, match="features.batch_size"):
        Features.from_config({"features": {}})


@dataclasses.dataclass(frozen=True)
class Inner(Section):
    root: str


@dataclasses.dataclass(frozen=True)
class Outer(Section):
    """An optional nested section (module level: its hints must resolve)."""

    SECTION: typing.ClassVar[str] = "outer"
    spair: Inner | None


def test_an_optional_section_is_none_when_absent() -> None:
    assert nested_model(Inner | None) == (Inner, True)
    assert Outer.from_config({"outer": {}}).spair is None
    assert Outer.from_config({"outer": {"spair": {"root": "x"}}}).spair == Inner("x")
    with pytest.raises(ValueError, match="outer.spair.root"):
        Outer.from_config({"outer": {"spair": {}}})

"""The schema's nodes, ``$ref`` followed, and how a settings model and its node disagree: the
drift test of vislaw.sections and the LoRA settings' check (a nullable node no section reaches)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from vislaw.config import schema
from vislaw.sections import Section, nested_model


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (and a one-element ``allOf``) to the node it names."""
    while True:
        if "$ref" in node:
            target: Any = schema()
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        elif len(node.get("allOf", [])) == 1 and "properties" not in node:
            node = {**resolve(node["allOf"][0]), **{k: v for k, v in node.items() if k != "allOf"}}
        else:
            return node


def schema_node(dotted: str) -> dict[str, Any]:
    node = schema()
    for part in dotted.split("."):
        node = resolve(node["properties"][part])
    return resolve(node)


def drift(model: type[Section], node: dict[str, Any], key: str) -> list[str]:
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
            problems += drift(nested, resolve(props[name]), f"{key}.{name}")
    return problems

"""The settings models (vislaw.sections) and the schema describe the same keys: a model field
that is not a schema key, a schema key no model field reads, a default written in a model, or a
schema key with neither a default nor `required` (so a checked config may lack it) all fail."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from helpers.paths import ROOT
from helpers.schema_nodes import drift, schema_node
from vislaw.config import load_config
from vislaw.sections import Section, nested_model, section_models

TOP_LEVEL = [m for m in section_models() if m.SECTION]


def test_there_are_section_models() -> None:
    assert TOP_LEVEL, "no Section model found (vislaw.sections.SECTION_MODULES)"


@pytest.mark.parametrize("model", TOP_LEVEL, ids=lambda m: m.SECTION)
def test_model_matches_its_schema_section(model: type[Section]) -> None:
    assert drift(model, schema_node(model.SECTION), model.SECTION) == []


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

    problems = drift(Broken, schema_node("features"), "features")
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

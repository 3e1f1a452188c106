"""A family's checkpoint facts live on its class (issue 27 scope 3), and the registry hands its
map to the modules below it by registration, not by patching their classes.

``model_types`` / ``unused_heads`` were tables in vislaw.encoders.loading keyed by family name,
so a new family's checkpoints were not checked at all until someone edited that table too; and
the registry set ``FusionEncoder.member_families`` from outside to dodge an import cycle.
"""

from __future__ import annotations

import ast

import pytest

from helpers.paths import ROOT
from vislaw.encoders import registry
from vislaw.encoders.base import registered_families
from vislaw.encoders.dinov2 import Dinov2Encoder
from vislaw.encoders.loading import loading_problems, model_type_problem


class ThrowawayTypes(Dinov2Encoder):
    """A family of its own name that loads checkpoints of a model_type no built-in one takes."""

    family = "throwaway_types"
    model_types = frozenset({"throwaway_vision_model"})
    unused_heads = (r"throwaway_head\.",)


@pytest.fixture
def throwaway(monkeypatch):
    monkeypatch.setitem(registry.FAMILIES, ThrowawayTypes.family, ThrowawayTypes)


def test_a_throwaway_familys_declared_model_types_are_what_loading_accepts(throwaway):
    assert model_type_problem("throwaway_types", "throwaway_vision_model", "org/x") is None
    refused = model_type_problem("throwaway_types", "dinov2", "org/x")
    assert refused is not None and "family 'throwaway_types' handles throwaway_vision_model" in (
        refused
    )
    assert refused.endswith("use family: dinov2")
    # and a built-in family's refusal now points at the new one
    hint = model_type_problem("clip", "throwaway_vision_model", "org/y")
    assert hint is not None and hint.endswith("use family: throwaway_types")


def test_a_throwaway_familys_unused_heads_are_what_loading_lets_it_drop(throwaway):
    info = {"unexpected_keys": ["throwaway_head.weight", "other.weight"]}
    assert loading_problems(info, "throwaway_types") == [
        "1 UNEXPECTED (would be dropped): ['other.weight']"
    ]
    # a built-in family's heads still come from its class (CLIP's text tower)
    assert loading_problems({"unexpected_keys": ["text_model.x"]}, "clip") == []


def test_the_family_index_is_the_registrys_own_map():
    """One map, shared: what a test or a plugin adds to FAMILIES is what fusion and the
    loading check see."""
    assert registered_families() is registry.FAMILIES


def test_the_registry_sets_no_attribute_of_another_modules_class():
    """No ``Name.attr = ...`` at the registry's top level (it patched FusionEncoder once)."""
    tree = ast.parse((ROOT / "vislaw/encoders/registry.py").read_text())
    patched = [
        ast.unparse(target)
        for node in tree.body
        if isinstance(node, ast.Assign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute)
    ]
    assert patched == []

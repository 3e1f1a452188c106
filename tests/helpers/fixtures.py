"""Module fixtures shared by several test modules, registered for every test by the top conftest
(``pytest_plugins``). Module-scoped: each module that asks builds its own folder, as when each
module defined them; a module that defines a fixture of the same name (test_lora_subset's and
test_provenance's ``stage1``, test_lmvr's ``stage2``) uses its own."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def stage1(tmp_path_factory) -> Path:
    """A finished stage-1 folder: tiny CLIP, random projector, tiny Llama, plain template."""
    from helpers.tiny_vlm import write_stage1

    return write_stage1(tmp_path_factory.mktemp("a"))


@pytest.fixture(scope="module")
def stage2(tmp_path_factory) -> Path:
    """A tiny stage-2 folder overfitted to name each colour of the colour benchmark."""
    from helpers.colour_bench import write_stage2

    return write_stage2(tmp_path_factory.mktemp("model"))

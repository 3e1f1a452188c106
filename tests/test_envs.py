"""Static checks of the per-stack conda env files (CI has no conda binary to build them).

Each env file must parse, pin Python 3.11 and torch, and provide every third-party package that
the code run in it imports: for each encoder family, the imports of its module (and the vislaw
modules it pulls in), found by walking the source; for each analysis-side package, the same.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from vislaw.encoders.registry import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
ENV_DIR = ROOT / "envs"
ENV_FILES = sorted(ENV_DIR.glob("*.yaml"))

# import name -> distribution name, for every third-party module the project imports.
DISTRIBUTION = {
    "torch": "torch",
    "torchvision": "torchvision",
    "transformers": "transformers",
    "diffusers": "diffusers",
    "tokenizers": "tokenizers",
    "accelerate": "accelerate",
    "deepspeed": "deepspeed",
    "safetensors": "safetensors",
    "open_clip": "open-clip-torch",
    "timm": "timm",
    "lmms_eval": "lmms-eval",
    "PIL": "pillow",
    "numpy": "numpy",
    "h5py": "h5py",
    "yaml": "pyyaml",
    "jsonschema": "jsonschema",
    "tqdm": "tqdm",
    "scipy": "scipy",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "peft": "peft",
}

# Library areas that run in a given env (besides the encoder families, which declare theirs).
AREA_ENV = {
    "vislaw.law": "analysis",
    "vislaw.scores.correspondence": "analysis",
    "vislaw.data.synthetic": "analysis",
    "vislaw.data.imagefolder": "analysis",
    "vislaw.lmvr.probe": "analysis",
    "vislaw.eval": "lmms_eval",
}


def _pyproject_extras() -> tuple[set[str], dict[str, set[str]]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {Requirement(r).name.lower() for r in data["dependencies"]}
    extras: dict[str, set[str]] = {}
    raw = data["optional-dependencies"]

    def expand(extra: str) -> set[str]:
        names: set[str] = set()
        for item in raw[extra]:
            req = Requirement(item)
            if req.name == "vislaw":
                for sub in req.extras:
                    names |= expand(sub)
            else:
                names.add(req.name.lower())
        return names

    for extra in raw:
        extras[extra] = expand(extra)
    return core, extras


def env_packages(path: Path) -> set[str]:
    """Distributions an env file installs: its pip list plus vislaw's core deps and extras."""
    env = yaml.safe_load(path.read_text())
    core, extras = _pyproject_extras()
    names: set[str] = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for item in dep["pip"]:
                match = re.fullmatch(r"-e \.\.(?:\[([\w,]+)\])?", item.split("#")[0].strip())
                if match:
                    names |= core
                    for extra in (match.group(1) or "").split(","):
                        names |= extras.get(extra, set()) if extra else set()
                else:
                    names.add(Requirement(item).name.lower())
    return names


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def third_party_imports(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level third-party modules imported anywhere (also inside functions) by ``module``
    and, transitively, by the vislaw modules it imports."""
    seen = seen if seen is not None else set()
    if module in seen:
        return set()
    seen.add(module)
    path = _module_file(module)
    if path is None:
        return set()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "vislaw":
                found |= third_party_imports(name, seen)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.stem for p in ENV_FILES])
def test_env_file_parses_and_pins(path):
    env = yaml.safe_load(path.read_text())
    assert env["name"].startswith("vislaw-")
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "torch==2.14.1" in pip, f"{path.name} must pin torch"
    assert any(item.startswith("-e ..") for item in pip), f"{path.name} must install vislaw"


def test_every_family_env_exists():
    names = {p.stem for p in ENV_FILES}
    for family, cls in FAMILIES.items():
        assert cls.conda_env in names, f"family {family}: no envs/{cls.conda_env}.yaml"
    assert {"transformers", "diffusers", "open_clip", "lmms_eval", "analysis"} <= names


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_env_provides_its_imports(family):
    cls = FAMILIES[family]
    imports = third_party_imports(cls.__module__)
    unknown = imports - set(DISTRIBUTION)
    assert not unknown, f"add {unknown} to DISTRIBUTION in this test"
    needed = {DISTRIBUTION[m] for m in imports}
    missing = needed - env_packages(ENV_DIR / f"{cls.conda_env}.yaml")
    assert not missing, f"envs/{cls.conda_env}.yaml lacks {missing} imported by family {family}"


@pytest.mark.parametrize("area", sorted(AREA_ENV))
def test_area_env_provides_its_imports(area):
    if importlib.util.find_spec(area) is None:
        pytest.skip(f"{area} does not exist yet")
    imports = set()
    spec = importlib.util.find_spec(area)
    modules = [area]
    if spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        modules += [f"{area}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__"]
    for module in modules:
        imports |= third_party_imports(module)
    unknown = imports - set(DISTRIBUTION)
    assert not unknown, f"add {unknown} to DISTRIBUTION in this test"
    env = AREA_ENV[area]
    missing = {DISTRIBUTION[m] for m in imports} - env_packages(ENV_DIR / f"{env}.yaml")
    assert not missing, f"envs/{env}.yaml lacks {missing} imported by {area}"


def test_open_clip_env_names_open_clip():
    assert "open-clip-torch" in env_packages(ENV_DIR / "open_clip.yaml")
    assert "lmms-eval" in env_packages(ENV_DIR / "lmms_eval.yaml")

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

from helpers.paths import ROOT
from vislaw.encoders.registry import FAMILIES

ENV_DIR = ROOT / "envs"
ENV_FILES = sorted(ENV_DIR.glob("*.yaml"))
# How an env file installs vislaw: from the checkout named by VISLAW_ROOT (vislaw/deploy.py).
VISLAW_LINE = re.compile(r"-e \$\{VISLAW_ROOT\}(?:\[([\w,]+)\])?")

# import name -> distribution name, for every third-party module the project imports.
DISTRIBUTION = {
    "torch": "torch",
    "torchvision": "torchvision",
    "transformers": "transformers",
    "huggingface_hub": "huggingface-hub",
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
    "loguru": "loguru",
    "jinja2": "jinja2",
    "threadpoolctl": "threadpoolctl",
    "datasets": "datasets",
    "markdown_it": "markdown-it-py",
}

# Library areas that run in a given env (besides the encoder families, which declare theirs).
AREA_ENV = {
    "vislaw.law": "analysis",
    "vislaw.scores.correspondence": "analysis",
    "vislaw.data.synthetic": "analysis",
    "vislaw.data.imagefolder": "analysis",
    "vislaw.lmvr.probe": "analysis",
    "vislaw.report_tables": "analysis",
    "vislaw.eval": "lmms_eval",
    # rule prepare_models: builds the benchmark datasets' cache with the evaluation's `datasets`
    "vislaw.prepare.hub": "lmms_eval",
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
                match = VISLAW_LINE.fullmatch(item.split(" #")[0].strip())
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
    and, transitively, by the vislaw modules it imports; not those under ``if TYPE_CHECKING:``,
    which never run."""
    seen = seen if seen is not None else set()
    if module in seen:
        return set()
    seen.add(module)
    path = _module_file(module)
    if path is None:
        return set()
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    for block in ast.walk(tree):  # imports for type checkers only never run
        if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING"):
            block.body = []
    for node in ast.walk(tree):
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
    assert any(VISLAW_LINE.fullmatch(item) for item in pip), f"{path.name} must install vislaw"


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


# --- building the envs where Snakemake builds them ---------------------------------------------
# Snakemake (deployment/conda.py, Env.create) copies an env file to <conda-prefix>/<hash>.yaml
# and runs `conda env create --file <copy> --prefix <conda-prefix>/<hash>`; conda writes the
# file's pip list to condaenv.*.requirements.txt beside the copy and runs
# `pip install -U -r <that file>` from the copy's folder. This reproduces those steps without
# conda: the third-party lines must parse as requirements, and the vislaw line really installs
# (--no-deps, into a venv that sees this one's site-packages, so no index is needed).


def _snakemake_copy(env_file: Path, conda_prefix: Path) -> Path:
    """The copy Snakemake makes: <conda-prefix>/<md5 of prefix + content>.yaml."""
    import hashlib
    import os

    content = env_file.read_bytes()
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(os.path.realpath(conda_prefix).encode())
    digest.update(content)
    conda_prefix.mkdir(parents=True, exist_ok=True)
    copy = conda_prefix / f"{digest.hexdigest()}.yaml"
    copy.write_bytes(content)
    return copy


def _conda_requirements(copy: Path) -> tuple[Path, list[str]]:
    """conda's pip step: the pip list written beside the copy; returns (file, vislaw lines)."""
    import tempfile

    env = yaml.safe_load(copy.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    # vislaw's line: an editable/path install (or one naming vislaw); the rest are requirements
    others = [i for i in pip if not i.startswith(("-e", ".", "/", "$")) and "vislaw" not in i]
    for item in others:
        Requirement(item)  # every third-party line is a plain requirement
    ours = [item for item in pip if item not in others]
    with tempfile.NamedTemporaryFile(
        "w", prefix="condaenv.", suffix=".requirements.txt", dir=copy.parent, delete=False
    ) as handle:
        handle.write("\n".join(ours) + "\n")
    return Path(handle.name), ours


@pytest.fixture(scope="module")
def scratch_venv(tmp_path_factory) -> Path:
    """A venv on top of this one (its packages visible through a .pth file, since a venv made
    from a venv would see only the base interpreter's): pip installs only vislaw into it."""
    import site
    import subprocess

    venv = tmp_path_factory.mktemp("envs") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site_dir,) = (venv / "lib").glob("python*/site-packages")
    (site_dir / "_outer_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PIP_REQUIRE_VIRTUALENV"}}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", **extra)
    return env


@pytest.mark.parametrize("path", ENV_FILES, ids=[p.stem for p in ENV_FILES])
def test_env_installs_vislaw_from_snakemake_copy(path, tmp_path, scratch_venv):
    import subprocess

    from vislaw.deploy import export_package_root

    copy = _snakemake_copy(path, tmp_path / "project" / ".snakemake" / "conda")
    requirements, ours = _conda_requirements(copy)
    assert len(ours) == 1, f"{path.name}: one pip line installs vislaw, got {ours}"
    # What the Snakefile exports before Snakemake builds any env.
    root = {"VISLAW_ROOT": str(ROOT)}
    import os

    saved = os.environ.pop("VISLAW_ROOT", None)
    try:
        root["VISLAW_ROOT"] = str(export_package_root(ROOT))
    finally:
        os.environ.pop("VISLAW_ROOT", None)
        if saved is not None:
            os.environ["VISLAW_ROOT"] = saved
    python = scratch_venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-U", "--no-deps", "--no-build-isolation"]
        + ["-r", str(requirements)],
        cwd=copy.parent,
        env=_clean_env(**root),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    extra = VISLAW_LINE.fullmatch(ours[0].split(" #")[0].strip())
    assert extra, f"{path.name}: {ours[0]!r} must be -e ${{VISLAW_ROOT}}[extra]"
    assert extra.group(1) in _pyproject_extras()[1], f"{path.name}: no such extra"
    probe = subprocess.run(
        [str(python), "-c", "import vislaw.deploy, sys; print(vislaw.deploy.__file__)"],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert Path(probe.stdout.strip()).resolve().is_relative_to(ROOT), probe.stdout


def test_package_root_refuses_a_folder_without_vislaw(tmp_path, monkeypatch):
    from vislaw.deploy import export_package_root

    monkeypatch.setenv("VISLAW_ROOT", str(tmp_path))
    with pytest.raises(RuntimeError, match="VISLAW_ROOT=.* is not a vislaw checkout"):
        export_package_root(ROOT)
    monkeypatch.delenv("VISLAW_ROOT")
    assert export_package_root(ROOT) == ROOT

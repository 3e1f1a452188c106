"""The tests' own layout (issue 27, scope 5): unit tests of one vislaw package under
``tests/unit/<package>/``, Snakemake/SLURM/demo runs under ``tests/workflow/``, and what they
share under ``tests/helpers/``, imported as ``helpers``. A test module that imports ``conftest``
or another test module runs that module's fixtures and collection side effects in a second
copy and breaks when either moves; a loose test file is one no tier or folder owns."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from helpers.paths import ROOT, TESTS

LOOSE_LAYERS = ("core", "workflow")
"""Folders under tests/unit/ for the tests of vislaw's loose top-level modules, named by their
layer (docs/architecture.md): core (config, sections, layout, io, ranks, warm, deploy, the
front door) and workflow (pipeline, checks, jobs, resources, cost, plan)."""
OTHER_FOLDERS = ("helpers", "data")
"""Folders under tests/ that hold no tests: shared modules, and checked-in data with its
generators (tests/data/README.md)."""


def _packages(root: Path = ROOT) -> set[str]:
    return {p.parent.name for p in (root / "vislaw").glob("*/__init__.py")}


def _forbidden_imports(path: Path) -> list[str]:
    """The ``conftest`` and ``test_*`` modules ``path`` imports, anywhere in its body."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # from x import test_y names a module too
            prefix = f"{node.module}." if node.module else ""
            names = [node.module or ""] + [prefix + alias.name for alias in node.names]
        else:
            continue
        for name in names:
            last = name.split(".")[-1]
            if last == "conftest" or last.startswith("test_"):
                found.append(name)
    return found


def layout_problems(tests: Path = TESTS, packages: set[str] | None = None) -> list[str]:
    """Every test file outside tests/unit/<package>/ and tests/workflow/, every loose module in
    tests/ (conftest.py aside), and every import of conftest or of a test module."""
    allowed = (packages if packages is not None else _packages()) | set(LOOSE_LAYERS)
    problems = []
    for path in sorted(tests.rglob("*.py")):
        rel = path.relative_to(tests)
        problems += [f"tests/{rel}: imports {name}" for name in _forbidden_imports(path)]
        top = rel.parts[0]
        if top in OTHER_FOLDERS or rel == Path("conftest.py"):
            if top == "helpers" and path.name.startswith("test_"):
                problems.append(f"tests/{rel}: a test file among the helpers")
            elif (
                top == "helpers" and path.stem != "__init__" and importlib.util.find_spec(path.stem)
            ):
                # A helper run as a script (multirank_driver under torchrun) has tests/helpers
                # first on sys.path: helpers/tokenizers.py hid the tokenizers package there.
                problems.append(f"tests/{rel}: hides the installed module {path.stem} from scripts")
            continue
        if path.name == "__init__.py" and top in ("unit", "workflow"):
            continue
        if top == "workflow" and len(rel.parts) == 2 and path.name.startswith("test_"):
            continue
        if top == "unit" and len(rel.parts) == 3 and path.name.startswith("test_"):
            if rel.parts[1] in allowed:
                continue
            problems.append(
                f"tests/{rel}: tests/unit/{rel.parts[1]} names no vislaw package and no loose "
                f"layer ({', '.join(LOOSE_LAYERS)})"
            )
            continue
        problems.append(
            f"tests/{rel}: not under tests/unit/<package>/ or tests/workflow/ (a test) or "
            f"tests/helpers/ (anything else)"
        )
    return problems


def test_tests_sit_in_their_folders_and_import_no_test_module():
    assert layout_problems() == []


def test_the_layout_check_catches_a_flat_test_a_loose_helper_and_test_imports(tmp_path):
    """Planted: the flat layout this replaced (tests/test_x.py, tests/helper.py), a folder that
    names no package, a helper named like a test or like an installed package, and imports of
    conftest and a test module."""
    tests = tmp_path / "tests"
    files = {
        "conftest.py": "",
        "test_flat.py": "from conftest import run_snakemake\n",
        "loose_helper.py": "",
        "unit/encoders/test_ok.py": "from helpers.paths import ROOT\n",
        "unit/nowhere/test_lost.py": "",
        "unit/encoders/deeper/test_deep.py": "",
        "workflow/test_run.py": "def f():\n    import test_flat\n",
        "workflow/test_rel.py": "from . import test_run\nfrom .test_run import f\n",
        "workflow/test_pkg.py": "from unit.encoders import test_ok\n",
        "helpers/test_like.py": "",
        "helpers/tokenizers.py": "",
        "helpers/shared.py": "from unit.encoders.test_ok import ROOT\n",
    }
    for name, text in files.items():
        (tests / name).parent.mkdir(parents=True, exist_ok=True)
        (tests / name).write_text(text)
    problems = "\n".join(layout_problems(tests, {"encoders"}))
    for expected in [
        "tests/test_flat.py: imports conftest",
        "tests/test_flat.py: not under tests/unit/<package>/",
        "tests/loose_helper.py: not under",
        "tests/unit/nowhere/test_lost.py: tests/unit/nowhere names no vislaw package",
        "tests/unit/encoders/deeper/test_deep.py: not under",
        "tests/workflow/test_run.py: imports test_flat",
        "tests/workflow/test_rel.py: imports test_run",
        "tests/helpers/test_like.py: a test file among the helpers",
        "tests/helpers/tokenizers.py: hides the installed module tokenizers from scripts",
        "tests/helpers/shared.py: imports unit.encoders.test_ok",
        "tests/workflow/test_pkg.py: imports unit.encoders.test_ok",
    ]:
        assert expected in problems, f"{expected!r} not reported:\n{problems}"
    assert "tests/unit/encoders/test_ok.py" not in problems
    assert "test_run.py: not under" not in problems

"""Shape rules of the library: no import cycle among vislaw's modules (issue 17), its packages
in layers that import only downwards and no cycle among the packages (issue 27,
docs/architecture.md), no function longer than 80 lines. Imports made inside functions count (a
lazy import hides a dependency, it does not remove it); those under ``if TYPE_CHECKING:`` do
not."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers.paths import ROOT

MAX_FUNCTION_LINES = 80


def _modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for path in sorted((root / "vislaw").rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for sub in ast.walk(node))
    return skipped


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """{module: the vislaw modules it imports anywhere in its body} (of ``root``'s vislaw)."""
    modules = _modules(root)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = owner(name) if name.startswith("vislaw") else None
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_vislaw_has_no_import_cycle() -> None:
    assert cycles(import_graph()) == []


# The library's layers, lowest first (docs/architecture.md): a module may import its own layer
# and the layers below it. Units are vislaw's top-level modules and packages.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("core", ("vislaw", "config", "sections", "layout", "io", "host", "ranks", "gpu_rules",
              "deploy", "warm")),
    ("encoders", ("encoders",)),
    ("model", ("vlm",)),
    ("data", ("data",)),
    ("stages", ("train", "features", "scores", "eval", "lmvr")),
    ("law", ("law",)),
    ("workflow", ("pipeline", "checks", "jobs", "resources", "cost", "plan", "prepare",
                  "report_tables")),
    ("studies", ("studies",)),
)  # fmt: skip
ENTRY_POINTS = ("__main__", "cli")  # module names of the entry points: above every layer


def unit_of(module: str) -> str:
    """The unit a module belongs to: its top-level package or module, or the module itself for
    an entry point (which may import anything and which no library module may import)."""
    parts = module.split(".")
    if parts[-1] in ENTRY_POINTS:
        return module
    return parts[1] if len(parts) > 1 else "vislaw"


def layer_problems(root: Path = ROOT) -> list[str]:
    """Every import that goes up a layer or into an entry point, every unit in no layer, and
    every cycle among the units (siblings of a layer may import each other, not in a circle)."""
    layer = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
    names = [name for name, _ in LAYERS]
    problems, units = [], {}
    for module, targets in import_graph(root).items():
        source = unit_of(module)
        units.setdefault(source, set())
        if source not in layer and source != module:
            problems.append(f"{module}: unit vislaw.{source} is in no layer (LAYERS)")
        for target in sorted(targets):
            dest = unit_of(target)
            if dest == target and target.split(".")[-1] in ENTRY_POINTS:
                if source != module:
                    problems.append(f"{module} imports the entry point {target}")
                continue
            if source != dest:
                units[source].add(dest)
            if source in layer and dest in layer and layer[dest] > layer[source]:
                problems.append(
                    f"{module} ({names[layer[source]]}) imports {target} "
                    f"({names[layer[dest]]}, a higher layer)"
                )
    problems += [f"package cycle: {' -> '.join(c)}" for c in cycles(units)]
    return sorted(set(problems))


def test_vislaw_imports_only_downwards_and_its_packages_form_no_cycle() -> None:
    assert layer_problems() == []


def _planted(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of vislaw with ``line`` imported inside a new function of ``module``."""
    import shutil

    shutil.copytree(ROOT / "vislaw", tmp_path / "vislaw")
    path = tmp_path / Path(*module.split(".")).with_suffix(".py")
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {line}\n")
    return tmp_path


def test_the_layer_check_finds_a_planted_upward_import(tmp_path) -> None:
    root = _planted(
        tmp_path, "vislaw.encoders.base", "from vislaw.pipeline import load_checked_config"
    )
    problems = layer_problems(root)
    upward = "vislaw.encoders.base (encoders) imports vislaw.pipeline (workflow, a higher layer)"
    assert upward in problems
    # and, as pipeline imports encoders, the packages it reaches now form a cycle
    assert [p for p in problems if p != upward] == [
        "package cycle: checks -> data -> encoders -> eval -> lmvr -> pipeline -> train -> vlm"
    ]


def test_the_layer_check_finds_a_cycle_between_siblings_and_an_entry_point_import(
    tmp_path,
) -> None:
    root = _planted(tmp_path, "vislaw.train.settings", "import vislaw.scores.settings")
    assert layer_problems(root) == ["package cycle: scores -> train"]
    root = _planted(tmp_path / "b", "vislaw.law.fit", "from vislaw.lmvr.cli import main")
    assert layer_problems(root) == ["vislaw.law.fit imports the entry point vislaw.lmvr.cli"]


def test_a_new_top_level_unit_must_be_given_a_layer(tmp_path) -> None:
    import shutil

    shutil.copytree(ROOT / "vislaw", tmp_path / "vislaw")
    (tmp_path / "vislaw" / "gadgets.py").write_text("import vislaw.config\n")
    assert layer_problems(tmp_path) == [
        "vislaw.gadgets: unit vislaw.gadgets is in no layer (LAYERS)"
    ]


def test_no_function_is_longer_than_80_lines() -> None:
    long = []
    for module, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines ({path.name}:{node.lineno})")
    assert long == []

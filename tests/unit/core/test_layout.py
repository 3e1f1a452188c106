"""vislaw.layout is the one place that names output paths (issue 17, scope 2): every file the
demo DAG plans is one the layout names, each wildcard pattern the rules build is its concrete
path with placeholders, the library's file-name constants are the layout's, and no rule file
spells a results path component itself."""

from __future__ import annotations

import inspect
import io
import re
import tokenize
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import isolate, run_snakemake
from vislaw import layout
from vislaw.layout import RunLayout, data_path, under_data_root
from vislaw.pipeline import load_checked_config

SAMPLE = RunLayout("RESULTS", "RUN", "DATA")
# The arguments a layout method may take, and a concrete value of each.
VALUES = {
    "encoder": "clip224+dinov2.x",
    "stage": "stage2",
    "benchmark": "synth_color",
    "dataset": "spair",
    "source": "spair",
    "kind": "baseline",
    "condition": "gaussian_noise-3",
    "name": "r2.csv",
    "round_index": "4",
}


def _templates(lay: RunLayout) -> dict[str, tuple[str, list[str]]]:
    """{member: (path, argument names)}: properties as they are, methods called with Snakemake
    placeholders, as the rules call them. log() and benchmark() take free parts (rule names)."""
    out = {}
    for name, member in inspect.getmembers(RunLayout):
        if name.startswith("_") or name in {"from_config", "log", "benchmark"}:
            continue
        if isinstance(member, property):
            out[name] = (getattr(lay, name), [])
        elif inspect.isfunction(member):
            args = list(inspect.signature(member).parameters)[1:]
            out[name] = (getattr(lay, name)(*(f"{{{a}}}" for a in args)), args)
    return out


def _regex(pattern: str) -> str:
    return re.sub(r"\\\{(\w+)\\\}", "[^/]+", re.escape(pattern))


def test_every_pattern_is_its_concrete_path_with_placeholders():
    for name, (pattern, args) in _templates(SAMPLE).items():
        assert set(args) <= set(VALUES), f"RunLayout.{name}: give VALUES its arguments {args}"
        concrete = getattr(SAMPLE, name)
        if args:
            concrete = concrete(*(VALUES[a] for a in args))
        assert pattern.format(**VALUES) == concrete, name
        assert concrete.startswith(("RESULTS/RUN", "DATA/")), name
    assert SAMPLE.log("evaluate", "{encoder}", "{benchmark}").format(**VALUES) == SAMPLE.log(
        "evaluate", VALUES["encoder"], VALUES["benchmark"]
    )


def test_layout_refuses_an_unknown_stage_or_lmvr_kind():
    with pytest.raises(ValueError, match="stage3"):
        SAMPLE.stage_dir("stage3", "clip224")
    with pytest.raises(ValueError, match="pooled"):
        SAMPLE.lmvr_feature("clip224", "pooled", "clean")


def _planned_paths(configfile: Path, *args: str) -> dict[str, set[str]]:
    """{rule: its jobs' output, log and benchmark paths} of a forced dry run."""
    result = run_snakemake(
        "-n", "--forceall", "--configfile", str(configfile),
        "--directory", str(configfile.parent), *args, timeout=900,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    paths: dict[str, set[str]] = {}
    rule = None
    for line in out.splitlines():
        head = re.match(r"^(?:local)?(?:rule|checkpoint) (\w+):", line)
        if head:
            rule = head.group(1)
        field = re.match(r"^\s+(output|log|benchmark): (.*)$", line)
        if field and rule:
            paths.setdefault(rule, set()).update(p.strip() for p in field.group(2).split(","))
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo config isolated in a temporary folder, its layout and its planned paths."""
    tmp = tmp_path_factory.mktemp("layout")
    config = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), tmp)
    path = tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    checked, _ = load_checked_config(path)
    return checked, RunLayout.from_config(checked), _planned_paths(path)


def test_every_planned_file_is_one_the_layout_names(demo):
    _, lay, planned = demo
    patterns = [_regex(p) for p, _ in _templates(lay).values()]
    patterns += [
        re.escape(lay.run_dir) + r"/logs/.+\.log",
        re.escape(lay.run_dir) + r"/benchmarks/.+\.tsv",
    ]
    pattern = re.compile("|".join(f"(?:{p})" for p in patterns))
    stray = sorted(
        f"{rule}: {path}"
        for rule, paths in planned.items()
        for path in paths
        if not pattern.fullmatch(path)
    )
    assert not stray, "planned paths vislaw.layout does not name:\n" + "\n".join(stray)
    assert len(planned) > 15  # every stage of the demo was planned


def test_rule_outputs_are_the_library_names(demo):
    checked, lay, planned = demo
    law = {lay.law_file(n) for n in layout.law_files(checked["law"]["strategies"])}
    assert law <= planned["law"] and {lay.law_file(n) for n in layout.LAW_FILES} <= law
    assert lay.data_manifest in planned["synthetic_data"]
    assert lay.lmvr_synthetic_images in planned["lmvr_images"]
    assert lay.lmvr_responses("clip224") in planned["lmvr"]


def test_library_constants_are_the_layouts(demo):
    from vislaw.lmvr import settings as lmvr
    from vislaw.train.settings import llm_source

    checked, lay, _ = demo
    assert lmvr.image_folder(checked) == Path(lay.lmvr_synthetic_images)
    assert lmvr.feature_file(lay.lmvr_features_dir("e"), "lmvr", "c") == Path(
        lay.lmvr_feature("e", "lmvr", "c")
    )
    if checked["llm"].get("tiny"):
        assert llm_source(checked) == str(Path(lay.llm_dir))
    assert set(layout.law_files(strategies=True)) >= layout.LAW_REPORTED
    assert set(layout.law_files(strategies=True)) >= set(layout.LAW_PAGES)  # report pages


def test_checkpoint_file_names_are_the_layouts():
    from vislaw.vlm import checkpoints

    assert checkpoints.INFO_FILE == layout.STAGE_INFO
    assert checkpoints.PROJECTOR_FILE == layout.STAGE_PROJECTOR
    assert checkpoints.LLM_DIR == layout.STAGE_LLM
    assert checkpoints.ENCODER_FILE == layout.STAGE_ENCODER


def test_data_paths_resolve_under_the_data_root():
    config = {"data": {"root": "d", "spair": {"root": "SPair"}, "x": "/abs", "b": "sets"}}
    assert data_path(config, "spair") == Path("d/SPair")
    assert data_path(config, "x") == Path("/abs")
    assert data_path(config, "b") == Path("d/sets")
    assert under_data_root(config, "p/q.json") == Path("d/p/q.json")


def _owned_components() -> tuple[set[str], set[str]]:
    """(folders, file names) the layout spells under the run folder, placeholders left out."""
    folders, files = set(), set()
    for path, _ in _templates(SAMPLE).values():
        parts = path.split("/")
        for part in parts[:-1]:
            if "{" not in part and part not in {"RESULTS", "RUN", "DATA"}:
                folders.add(part)
        last = parts[-1]
        (files if "." in last and "{" not in last else folders).add(last)
    files |= set(layout.LAW_FILES) | {layout.LAW_STRATEGIES_FILE} | set(layout.POLICY_FILES)
    folders = {f for f in folders if "{" not in f} - {"RESULTS", "RUN", "DATA"}
    return folders | set(layout.STAGES), files


def _owned_literals(source: str, folder: Path) -> list[tuple[int, str, list[str]]]:
    """(line, literal, owned parts) of every string literal in ``source`` (a Snakefile or .smk)
    that spells a results folder or file name of the layout. Prose (docstrings) and paths of
    repository files (envs, scripts, report captions next to the rules) are left alone."""
    folders, files = _owned_components()
    found = []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)):
            continue
        text = tok.string.lstrip("rbfRBF").strip("\"'")
        if re.search(r"\s", text) or text.startswith("../") or (folder / text).exists():
            continue  # prose (docstrings), or a repository file
        parts = [p for p in text.split("/") if p]
        owned = [p for p in parts if p in files or ("/" in text and p in folders)]
        if owned:
            found.append((tok.start[0], tok.string, owned))
    return found


def test_the_rule_lint_sees_a_spelled_path():
    old = 'LAW_TABLE = f"{RUN_DIR}/scores/law_input.csv"\nx = f"{RUN_DIR}/stage1/{{e}}/vlm.json"\n'
    found = _owned_literals(old, ROOT / "rules")
    assert [line for line, *_ in found] == [1, 2], found
    assert _owned_literals('LAYOUT.features("{encoder}")\n', ROOT / "rules") == []


def test_rule_files_spell_no_path_the_layout_owns():
    folders, files = _owned_components()
    assert {"features", "stage1", "scores"} <= folders and "law_input.csv" in files
    found = [
        f"{smk.relative_to(ROOT)}:{line}: {literal} ({', '.join(owned)})"
        for smk in [ROOT / "Snakefile", *sorted((ROOT / "rules").glob("*.smk"))]
        for line, literal, owned in _owned_literals(smk.read_text(), smk.parent)
    ]
    assert not found, "take these paths from vislaw.layout (LAYOUT):\n" + "\n".join(found)

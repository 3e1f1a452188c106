"""The HTML report and the run's answer: the table pages (vislaw.report_tables), the answer
`make demo` ends with (vislaw.law.answer), and the demo's report as a user sees it, rendered in
a real headless Chromium (tests/helpers/browser.py) with every section present and no broken
image."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import browser
from helpers.browser import chromium_or_skip, report_contents
from helpers.paths import ROOT
from vislaw.config import load_config
from vislaw.law.answer import answer_text
from vislaw.law.fit import LAW_MODEL, MODELS
from vislaw.law.report import write_law_outputs
from vislaw.law.settings import LawSettings
from vislaw.law.tables import read_paper_table
from vislaw.layout import RunLayout, law_files
from vislaw.report_tables import Page, run_pages, write_pages

pytestmark = pytest.mark.slow  # the demo's report in a browser

PAPER = ROOT / "resources/paper/ablations_t.csv"


# --- the table pages ------------------------------------------------------------------------


def test_csv_and_markdown_become_html_tables(tmp_path):
    csv = tmp_path / "c_scores.csv"
    csv.write_text("encoder,pck10_image,note\nclip224,0.123456,\ndinov2,0.5,<b>x</b>\n")
    md = tmp_path / "summary.md"
    md.write_text("# Law\n\n| benchmark | R² |\n|---|---|\n| mme | 0.91 |\n\n<script>x</script>\n")
    written = write_pages(
        [Page("Scores", "c_scores", str(csv), "C scores"), Page("Law", "summary", str(md), "S")],
        tmp_path / "tables",
    )
    assert [p.relative_to(tmp_path).as_posix() for p in written] == [
        "tables/Scores/c_scores.html",
        "tables/Law/summary.html",
    ]
    table = written[0].read_text()
    assert "<td>clip224</td>" in table and "<td>0.1235</td>" in table  # four digits
    assert "&lt;b&gt;x&lt;/b&gt;" in table and "<b>x</b>" not in table  # cells are escaped
    text = written[1].read_text()
    assert "<h1>Law</h1>" in text and "<td>0.91</td>" in text  # the Markdown table renders
    assert "<script>" not in text  # raw HTML in a text is shown, not run


def test_a_page_of_another_format_or_a_duplicate_is_named(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="report page 'x'.*x.json"):
        write_pages([Page("Law", "x", str(tmp_path / "x.json"), "X")], tmp_path / "out")
    csv = tmp_path / "a.csv"
    csv.write_text("a\n1\n")
    with pytest.raises(ValueError, match="duplicate"):
        write_pages([Page("S", "a", str(csv), "A")] * 2, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_the_pages_follow_the_targets():
    """The demo's targets give every table and text of scope 4; config/paper_v1.yaml, which
    fits the released table, gives the law's pages only (no run of its own to tabulate)."""
    demo = load_config(ROOT / "config/demo.yaml")
    pages = run_pages(demo, RunLayout.from_config(demo), law_files(False))
    names = {(category, name) for category, name, *_ in pages}
    assert names == {
        ("Scores", "a_scores"), ("Scores", "c_scores"), ("Scores", "benchmarks"),
        ("Law", "summary"), ("Law", "r2"), ("Law", "fit_stats"), ("Law", "coefficients"),
        ("Law", "policy"), ("Policy", "rounds"), ("Policy", "recommendation"), ("LMVR", "probe"),
    }  # fmt: skip
    assert all(source.startswith("results/demo/") for *_, source, _ in pages)
    paper = load_config(ROOT / "config/paper_v1.yaml")
    pages = run_pages(paper, RunLayout.from_config(paper), law_files(True))
    assert {category for category, *_ in pages} == {"Law"}
    assert ["Law", "policy_strategies"] in [page[:2] for page in pages]


# --- the answer -----------------------------------------------------------------------------


def _law_run(folder: Path, n_encoders: int) -> Path:
    """A run folder whose law was fitted by the real law on the paper's first encoders."""
    table = read_paper_table(PAPER, ["mmbench_en", "mme"])
    keep = sorted(table["encoder"].unique())[:n_encoders]
    settings = LawSettings.from_values(
        {"trials": 20, "bootstrap": 20, "random_draws": 5}, seed=0, source="test"
    )
    run_dir = folder / "results" / "paper_v1"
    write_law_outputs(table[table["encoder"].isin(keep)], run_dir / "law", settings)
    return run_dir


def test_answer_prints_the_laws_r2_in_sample_and_leave_one_out(tmp_path):
    run_dir = _law_run(tmp_path, 10)
    stats = pd.read_csv(run_dir / "law" / "fit_stats.csv")
    stats = stats[stats["model"] == LAW_MODEL]
    text = answer_text(run_dir)
    assert f"on 10 encoders: R² in-sample {stats['r2'].mean():.3f}, leave-one-out " in text
    assert f"leave-one-out {stats['loo_r2'].mean():.3f} (mean over 2 benchmarks)" in text
    assert "Recommended encoder: none (the run has no policy" in text
    assert f"Report: {run_dir / 'report.html'} (not built: make report)" in text


def test_answer_calls_a_fit_under_terms_plus_two_under_determined(tmp_path):
    assert len(MODELS[LAW_MODEL]) + 2 == 8
    text = answer_text(_law_run(tmp_path, 7))
    assert "on 7 encoders: under-determined (fewer than 8 encoders for 6 terms)" in text
    assert "in-sample" not in text and "leave-one-out" not in text  # no R² shown


def test_answer_of_a_missing_run_names_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        answer_text(tmp_path / "nope")


def test_make_demo_builds_the_report_then_prints_the_answer():
    """`make demo`'s recipe: the DAG, `make report`, then the answer (make -n prints it)."""
    result = subprocess.run(
        ["make", "-n", "demo", f"BIN={Path(sys.executable).parent}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "pip install" not in line]
    dag = next(i for i, line in enumerate(lines) if "--profile profiles/local" in line)
    report = next(i for i, line in enumerate(lines) if "--report" in line)
    answer = next(i for i, line in enumerate(lines) if "vislaw.law.answer --config" in line)
    assert dag < report < answer
    assert "config/demo.yaml" in lines[report]


# --- the demo's report in a browser ---------------------------------------------------------


def test_a_missing_browser_skips_here_and_fails_in_ci(monkeypatch, tmp_path):
    """Outside CI the browser test skips and names what is missing; in CI (.ci/run sets
    VISLAW_CI and installs Chromium) a missing browser is a failure, not a silent skip."""
    monkeypatch.setattr(browser, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv("VISLAW_CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-chromium"):
        chromium_or_skip()
    monkeypatch.setenv("VISLAW_CI", "1")
    with pytest.raises(pytest.fail.Exception, match="no-chromium"):
        chromium_or_skip()


def test_demo_report_renders_every_section_in_chromium(full_demo):
    """The report of the demo, opened in headless Chromium: every category and table page of
    scope 4 is there, and every image (figures, curves, token maps) decodes."""
    chromium_or_skip()
    contents = report_contents(full_demo.report)
    categories = contents["categories"]
    for category in ("Law", "Policy", "Scores", "Training", "LMVR"):
        assert category in categories, (category, sorted(categories))
    names = {name for items in categories.values() for name in items}
    pages = {
        "a_scores.html", "c_scores.html", "benchmarks.html", "summary.html", "r2.html",
        "coefficients.html", "rounds.html", "recommendation.html", "probe.html",
        "law.png", "law_overview.png", "training_curves.png", "predicted_vs_measured.png",
    }  # fmt: skip
    assert pages <= names, sorted(pages - names)
    assert any(name.endswith(".png") for name in categories["LMVR"])  # the token maps
    assert contents["images"] >= 5 and not contents["broken"], contents["broken"]
    texts = contents["texts"]
    assert (
        texts["recommendation.html"].startswith("Recommendation")
        and "Choose" in texts["recommendation.html"]
    )
    assert texts["c_scores.html"].startswith("C scores") and "clip224" in texts["c_scores.html"]
    assert "<table" in contents["html"]["c_scores.html"]  # rendered, not a download link
    assert "leave-one-out" in texts["summary.html"].lower()

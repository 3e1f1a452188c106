"""The run's tables and texts as small HTML pages, so that the HTML report shows them.

Snakemake's report (``snakemake --report``) shows images, HTML and PDF files inline and offers
every other file (a CSV, a Markdown text) only as a download link: the A, C and benchmark
scores, the law's R² and ``summary.md`` would be one click and a spreadsheet away. Rule
``report_tables`` (rules/report.smk) renders each of them here into
``<run>/report/tables/<category>/<name>.html``, a folder the report reads by pattern (one entry
per page, under its category). The pages are plain HTML with no script and no external file:
the report embeds them as they are.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vislaw.io.atomic import atomic_dir
from vislaw.layout import LAW_PAGES, RunLayout

STYLE = (
    "body{font-family:sans-serif;font-size:14px;margin:1em}"
    "table{border-collapse:collapse}"
    "th,td{border:1px solid #bbb;padding:2px 6px;text-align:right}"
    "th{background:#eee}td:first-child,th:first-child{text-align:left}"
)


@dataclass(frozen=True)
class Page:
    """One page of the report: a run file (``.csv`` or ``.md``) shown under ``category``."""

    category: str
    name: str
    source: str
    title: str

    @classmethod
    def from_values(cls, values: Sequence[str]) -> Page:
        """From a rule's params (a list of four strings, the order of the fields)."""
        category, name, source, title = values
        return cls(category, name, source, title)


def run_pages(
    config: Mapping[str, Any], layout: RunLayout, law_files: Sequence[str]
) -> list[list[str]]:
    """[category, name, source, title] of every table and text the config's ``targets`` make
    (a stage's tables exist when its target or one that needs them is asked for): the params
    of rule report_tables. ``law_files``: what rule law writes (law.strategies adds a table)."""
    targets = set(config["targets"])
    own_law = "law" in targets and not config["law"]["scores_table"]
    pages = []
    if targets & {"a_score", "policy"} or own_law:
        pages.append(["Scores", "a_scores", layout.a_scores_table, "A scores"])
    if targets & {"c_score", "policy"} or own_law:
        pages.append(["Scores", "c_scores", layout.c_scores_table, "C scores"])
    if "evaluate" in targets or own_law:
        pages.append(["Scores", "benchmarks", layout.benchmarks_table, "Benchmark scores"])
    if "law" in targets:
        pages += [
            ["Law", Path(file).stem, layout.law_file(file), f"The law: {file}"]
            for file in LAW_PAGES
            if file in law_files
        ]
    if "policy" in targets:
        pages.append(["Policy", "rounds", layout.policy_rounds_table, "Policy rounds"])
        pages.append(["Policy", "recommendation", layout.policy_recommendation, "Recommendation"])
    if "lmvr" in targets:
        pages.append(["LMVR", "probe", layout.lmvr_probe, "LMVR linear probe"])
    return pages


def render_csv(path: str | Path) -> str:
    """A CSV file as an HTML table (floats to four significant digits, empty cells blank)."""
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    return frame.to_html(index=False, na_rep="", float_format=lambda x: f"{x:.4g}", border=0)


def render_markdown(path: str | Path) -> str:
    """A Markdown file (CommonMark with tables) as HTML; raw HTML in it is escaped."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).enable("table").render(Path(path).read_text())


RENDERERS = {".csv": render_csv, ".md": render_markdown}


def page_html(page: Page) -> str:
    """The whole page: title, the file's name (what to look for in the run folder), body."""
    suffix = Path(page.source).suffix
    if suffix not in RENDERERS:
        raise ValueError(
            f"report page '{page.name}': {page.source} is not one of {sorted(RENDERERS)}"
        )
    body = RENDERERS[suffix](page.source)
    title = html.escape(page.title)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{STYLE}</style></head><body>\n<h2>{title}</h2>\n"
        f"<p><code>{html.escape(str(page.source))}</code></p>\n{body}\n</body></html>\n"
    )


def write_pages(pages: Sequence[Page], out_dir: str | Path) -> list[Path]:
    """Render every page into ``out_dir/<category>/<name>.html``, the folder replaced whole."""
    names = [(p.category, p.name) for p in pages]
    if len(set(names)) != len(names):
        raise ValueError(f"report pages: duplicate category/name in {names}")
    written = []
    with atomic_dir(out_dir) as tmp:
        for page in pages:
            target = tmp / page.category / f"{page.name}.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(page_html(page))
            written.append(Path(out_dir) / page.category / f"{page.name}.html")
    return written

"""The law's and the policy's figures as a reader sees them: no two texts overlap (renderer
extents of every drawn text) on the demo's input and on the paper's table, scores in the
benchmark's own units, one figure per benchmark in PNG, SVG and PDF, honest fit statements
(under-determined below 6 terms + 2 encoders) and intervals clipped to the benchmark's range."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from vislaw.eval.tasks import ACCURACY, BENCHMARKS
from vislaw.law.advise import advise
from vislaw.law.cli import main
from vislaw.law.fit import MIN_DETERMINED, fit_all, fit_statement
from vislaw.law.plot import (
    View,
    benchmark_figure,
    law_figure,
    overlapping_texts,
    overview_figure,
    text_boxes,
    views_for,
)
from vislaw.law.policy_mode.decide import decide_round
from vislaw.law.policy_mode.figure import predicted_vs_measured_figure
from vislaw.law.policy_mode.markdown import recommendation_markdown
from vislaw.law.policy_mode.rounds import RoundDecision, measured_scores
from vislaw.law.policy_mode.state import PolicyState
from vislaw.law.report import policy_tables, r2_table, write_law_outputs
from vislaw.law.settings import LawSettings, PolicySettings
from vislaw.law.tables import read_paper_table, score_scale
from vislaw.layout import LAW_FIGURE_FORMATS, law_figure_files
from vislaw.train.curves import line_styles, plot_training_curves, training_curves_figure

PAPER = "resources/paper/ablations_t.csv"


def demo_like_table(project_root, seed: int = 0) -> pd.DataFrame:
    """The demo's encoders and benchmarks (config/demo.yaml) with demo-like numbers: A a
    cosine in [0.4, 0.8], C a PCK x 100 in [2, 12] shared across benchmarks, accuracies in
    sixteenths (16 questions), so many encoders tie, as they do in the demo."""
    config = yaml.safe_load((project_root / "config/demo.yaml").read_text())
    encoders, rng = list(config["encoders"]), np.random.default_rng(seed)
    c = rng.uniform(2, 12, len(encoders))
    rows = []
    for bench in config["benchmarks"]:
        a, score = rng.uniform(0.4, 0.8, len(encoders)), rng.integers(0, 7, len(encoders)) / 16
        rows += [(e, bench, a[i], c[i], score[i]) for i, e in enumerate(encoders)]
    return pd.DataFrame(rows, columns=["encoder", "benchmark", "A", "C", "score"])


def _views(table: pd.DataFrame, table_format: str, normalised: bool = False) -> list[View]:
    fits = fit_all(table, seed=0, resamples=0, random_draws=5)
    scales = {b: score_scale(b, table_format, table[table.benchmark == b].score) for b in fits}
    return views_for(fits, scales, normalised)


@pytest.fixture(scope="module")
def paper_views(project_root):
    return _views(read_paper_table(project_root / PAPER), "paper_v1")


@pytest.fixture(scope="module")
def demo_views(project_root):
    return _views(demo_like_table(project_root), "tidy")


# --- no text over text ----------------------------------------------------------------------------


def test_overlap_check_sees_an_overlap():
    fig, ax = plt.subplots()
    ax.text(0.5, 0.5, "first label")
    ax.text(0.52, 0.5, "second label")
    ax.set_xlim(0, 1)  # ticks outside the limits are never drawn and never counted
    assert overlapping_texts(fig) == [("first label", "second label")]
    plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["demo_views", "paper_views"])
def test_no_two_texts_overlap_in_any_benchmark_figure(which, request):
    for view in request.getfixturevalue(which):
        fig = benchmark_figure(view)
        texts = [t.get_text() for t, _ in text_boxes(fig)]
        assert set(view.fit.encoders) <= set(texts), view.fit.benchmark  # every encoder named
        assert overlapping_texts(fig) == [], view.fit.benchmark
        plt.close(fig)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["demo_views", "paper_views"])
def test_no_two_texts_overlap_in_the_overview(which, request):
    """Row titles against the x labels of the row above included (the old law.png's fault)."""
    fig = law_figure(request.getfixturevalue(which))
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_no_two_texts_overlap_in_the_r2_and_policy_overview(paper_views):
    fits = {v.fit.benchmark: v.fit for v in paper_views}
    settings = LawSettings.from_values({"trials": 20}, seed=0)
    _, curves = policy_tables(fits, settings)
    fig = overview_figure(r2_table(fits), curves, settings.k)
    assert overlapping_texts(fig) == []  # the old one's slanted benchmark names overlapped
    plt.close(fig)


def test_policy_figure_is_a_ranked_interval_plot_without_overlaps(project_root):
    decisions = _policy_rounds(project_root)
    fig = predicted_vs_measured_figure(decisions, measured_scores(decisions[-1]))
    assert overlapping_texts(fig) == []
    ranked = fig.axes[0]
    labels = [t.get_text() for t in ranked.get_yticklabels()]
    ranking = decisions[-1].ranking
    names = [label.split(" (round")[0] for label in labels]
    scores = [ranking[name][0] for name in names]
    assert sorted(names) == sorted(ranking) and scores == sorted(scores, reverse=True)
    for d in decisions:  # every pick named with the round that ordered it
        for pick in d.picks:
            assert f"{pick} (round {d.round})" in labels
    plt.close(fig)


def test_training_curves_give_every_encoder_its_own_look(tmp_path):
    names = [f"encoder_{i}" for i in range(30)]
    styles = line_styles(names)
    looks = {(s["color"], s["linestyle"]) for s in styles.values()}
    assert len(looks) == len(names)
    dirs = {}
    for i, name in enumerate(names[:17]):  # the demo's 17 encoders, one stage each
        folder = tmp_path / name
        folder.mkdir()
        steps = np.arange(1, 21)
        pd.DataFrame({"step": steps, "loss": 3.0 / (steps + i)}).to_csv(
            folder / "loss.csv", index=False
        )
        dirs[name] = {1: folder}
    out = tmp_path / "curves.png"
    plot_training_curves(dirs, out)
    assert out.read_bytes()[:4] == b"\x89PNG"
    fig = training_curves_figure(dirs)
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = fig.legends[0]
    renderer = fig.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))
    assert len({(line.get_color(), line.get_linestyle()) for line in ax.get_lines()}) == 17
    plt.close(fig)


# --- units and files ------------------------------------------------------------------------------


def test_figures_are_in_the_benchmarks_own_units(paper_views, demo_views):
    by_name = {v.fit.benchmark: v for v in [*paper_views, *demo_views]}
    assert by_name["mmbench_en"].score_label == "accuracy (%)"
    assert "MME" in by_name["mme"].score_label and "points" in by_name["mme"].score_label
    mme = by_name["mme"]
    # raw units: the measured scores come back exactly (1502.7 for CLIP@336)
    clip336 = mme.score(mme.fit.y)[list(mme.fit.encoders).index("clip336")]
    assert clip336 == pytest.approx(1502.697, abs=1e-3)
    # the demo's accuracies (recorded as fractions) shown in percent
    synth = by_name["synth_color"]
    assert synth.scale == BENCHMARKS["synth_color"].scale == ACCURACY
    assert synth.score(synth.fit.y).max() == pytest.approx(100 * synth.fit.raw["score"].max())
    fig = benchmark_figure(synth)
    assert fig.axes[1].get_xlabel() == "measured accuracy (%)"
    plt.close(fig)
    normalised = View(synth.fit, synth.scale, normalised=True)
    assert normalised.score_label == "score (normalised)" and normalised.bounds is None


def test_scale_is_unknown_when_the_scores_leave_it():
    assert score_scale("mmmu_val", "paper_v1", [35.0]).high == 100
    assert score_scale("mmmu_val", "tidy", [0.35]).high == 1
    assert score_scale("mmmu_val", "tidy", [35.0]) is None  # percent where lmms-eval says 0..1
    assert score_scale("some_new_task", "tidy", [0.3]) is None


def test_one_figure_per_benchmark_in_every_format(tmp_path, project_root):
    table = read_paper_table(project_root / PAPER, ["mmbench_en", "mme"])
    settings = LawSettings.from_values({"trials": 20, "bootstrap": 0, "random_draws": 5}, seed=0)
    paths = write_law_outputs(table, tmp_path, settings, "paper_v1")
    names = law_figure_files(["mmbench_en", "mme"])
    assert len(names) == 2 * len(LAW_FIGURE_FORMATS) and set(names) <= set(paths)
    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert len(data) > 5000 and data.startswith(magic[name.rsplit(".", 1)[1]]), name


# --- honest captions and texts --------------------------------------------------------------------


def test_fit_statement_is_under_determined_below_terms_plus_two():
    assert MIN_DETERMINED == 8
    few = fit_statement(7, 0.99, 0.5)
    assert "under-determined" in few and "0.99" not in few and "0.50" not in few
    enough = fit_statement(8, 0.91, 0.42)
    assert "n = 8" in enough and "R² 0.91" in enough and "leave-one-out R² 0.42" in enough


def test_an_under_determined_figure_shows_no_r2(project_root):
    table = demo_like_table(project_root)
    table = table[table["encoder"].isin(table["encoder"].unique()[:5])]
    (view,) = _views(table[table.benchmark == "synth_color"], "tidy")
    fig = benchmark_figure(view)
    texts = " ".join(t.get_text() for t, _ in text_boxes(fig))
    assert "under-determined" in texts and "R² 0" not in texts and "R² 1" not in texts
    assert overlapping_texts(fig) == []
    plt.close(fig)


def test_recommendation_under_determined_shows_no_r2():
    decision = RoundDecision.from_json({
        "round": 0, "strategy": "order_ac", "finetuned": ["a", "b", "c"], "ordered": [],
        "picks": [], "stop": True, "why": "budget", "law_r2": 0.987, "law_loo_r2": None,
        "n_measured": 3, "ranking": {"a": [1.0, 0.0], "b": [0.5, 0.0], "c": [0.0, 0.0]},
        "top_k": [{"encoder": "a", "score": 1.0, "low": 1.0, "high": 1.0, "measured": True}],
        "bounds": [-0.2, 1.3],
    })  # fmt: skip
    text = recommendation_markdown([decision], 3)
    assert "n = 3 encoders for 6 terms: the fit is under-determined" in text
    assert "0.987" not in text  # the old text printed this in-sample R² without caveat
    assert "clipped to [-0.200, 1.300]" in text


def test_cli_recommend_says_under_determined_and_clips(paper, capsys):
    args = ["recommend", "--scores", str(paper), "--format", "paper_v1"]
    assert main([*args, "--benchmark", "mme", "--finetuned", "clip224", "sd15"]) == 0
    out = capsys.readouterr().out
    assert "n = 2 encoders for 6 terms: the fit is under-determined" in out
    assert "intervals clipped to what each benchmark can score: mme" in out


def _ceiling_state() -> PolicyState:
    """Two measured encoders near the top of a 0..1 accuracy and better ones unmeasured:
    the law's raw intervals reach past 100%."""
    a = np.array([[0.1, 0.5, 0.7, 0.9, 1.0]])
    c = np.array([0.1, 0.5, 0.7, 0.9, 1.0])
    y = np.array([[0.5, 0.97, np.nan, np.nan, np.nan]])
    return PolicyState(["e1", "e2", "e3", "e4", "e5"], ["synth_color"], a, c, y)


def test_intervals_are_clipped_to_the_benchmarks_range():
    state = _ceiling_state()
    table = pd.DataFrame(
        {
            "encoder": state.encoders,
            "benchmark": "synth_color",
            "A": state.a[0],
            "C": state.c,
            "score": state.y[0],
        }
    )
    scales = {"synth_color": ACCURACY}
    unclipped = advise(table, "greedy_law", {}, 0).predictions
    assert unclipped["high"].max() > 1.0  # the scenario does leave the range
    clipped = advise(table, "greedy_law", {}, 0, scales).predictions
    assert clipped["high"].max() <= 1.0 and clipped["low"].min() >= 0.0
    settings = PolicySettings.from_values({"strategy": "ucb"}, seed=0)
    decision = decide_round(0, state, [], settings, None, scales)
    low, high = decision.bounds
    # 0 and 1 (what accuracy allows) in the units of the normalisation (0.5 -> 0, 0.97 -> 1)
    assert (low, high) == pytest.approx(((0 - 0.5) / 0.47, (1 - 0.5) / 0.47))
    for entry in decision.top_k:
        assert low <= entry.low <= entry.score <= entry.high <= high


@pytest.fixture
def paper(project_root):
    return project_root / PAPER


def _policy_rounds(project_root) -> list[dict]:
    """Four rounds of the mode on two of the paper's benchmarks, the table as the truth."""
    from vislaw.law.advise import candidate_table, policy_state

    full = candidate_table(project_root / PAPER, "paper_v1", ["mmbench_en", "mme"])
    scales = {b: score_scale(b, "paper_v1") for b in ["mmbench_en", "mme"]}
    settings = PolicySettings.from_values({"budget": 6, "per_round": 2}, seed=0)
    truth = policy_state(full)
    known, ordered, decisions = ["clip224"], [], []
    for r in range(4):
        mask = np.isin(truth.encoders, known)[None, :]
        state = PolicyState(
            truth.encoders, truth.benchmarks, truth.a, truth.c, np.where(mask, truth.y, np.nan)
        )
        decisions.append(decide_round(r, state, ordered, settings, None, scales))
        if decisions[-1].stop:
            break
        ordered += decisions[-1].picks
        known += decisions[-1].picks
    return decisions


@pytest.mark.slow
def test_summary_of_an_under_determined_fit_gives_no_r2(tmp_path, project_root):
    table = demo_like_table(project_root)
    table = table[table["encoder"].isin(table["encoder"].unique()[:6])]
    settings = LawSettings.from_values(
        {"trials": 20, "bootstrap": 0, "random_draws": 5, "budgets": [3]}, seed=0
    )
    paths = write_law_outputs(table, tmp_path, settings)
    text = paths["summary.md"].read_text()
    assert "**Under-determined**: n = 6 encoders for 6 terms" in text
    assert "R² AC quad" not in text  # no R² table offered as evidence

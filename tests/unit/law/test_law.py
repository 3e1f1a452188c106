"""The AC law: table reading, the regression on tables with a known answer, leave-one-out,
bootstrap and random baselines, the region sampler's invariants, the policy simulation, the
outputs of a run on the paper's table, and the command line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vislaw.config import ConfigError, check_config
from vislaw.law import fit as F
from vislaw.law import region_sampler as P
from vislaw.law.cli import main
from vislaw.law.report import R2_COLUMNS, write_law_outputs
from vislaw.law.settings import LawSettings
from vislaw.law.tables import (
    PAPER_ENCODERS,
    TableError,
    read_candidates,
    read_paper_table,
    read_tidy_table,
    restrict_to_config,
)
from vislaw.layout import LAW_FILES

PAPER = "resources/paper/ablations_t.csv"
BETA = np.array([0.3, -1.2, 0.7, 2.0, -0.5, 1.1])  # [1, A, C, A^2, AC, C^2]


@pytest.fixture
def paper(project_root):
    return project_root / PAPER


def _quadratic_points(n: int = 13, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points that span the unit square exactly (min 0, max 1 on both axes) and y = quad(beta)."""
    rng = np.random.default_rng(seed)
    a, c = rng.random(n), rng.random(n)
    a[:2], c[2:4] = (0.0, 1.0), (0.0, 1.0)
    return a, c, F.design_matrix("ac_quadratic", a, c) @ BETA


# --- tables ---------------------------------------------------------------------------------


def test_paper_table_becomes_tidy_with_our_names(paper):
    table = read_paper_table(paper)
    assert len(table) == 13 * 8
    assert set(table["encoder"]) == set(PAPER_ENCODERS.values())
    row = table[(table.encoder == "clip336") & (table.benchmark == "mmbench_en")].iloc[0]
    assert (row.A, row.C, row.score) == pytest.approx((0.788125, 15.66, 64.26116838))
    wide = pd.read_csv(paper)
    # A is the mean of the two references, VizWiz included (its derived columns are spelled
    # vizwiz_vqa_* but the average keeps the full name).
    viz = table[table.benchmark == "vizwiz_vqa_val"].set_index("encoder")["A"]
    mean = (wide["vizwiz_vqa_val_mm_align224"] + wide["vizwiz_vqa_val_mm_align336"]) / 2
    expected = pd.Series(mean.to_numpy(), index=wide["model"].map(PAPER_ENCODERS))
    assert viz.sort_index().to_numpy() == pytest.approx(expected.sort_index().to_numpy(), abs=1e-6)


def test_paper_reader_falls_back_to_the_short_vizwiz_prefix(tmp_path, paper):
    wide = pd.read_csv(paper).rename(columns={"vizwiz_vqa_val_average": "vizwiz_vqa_average"})
    wide.to_csv(tmp_path / "t.csv", index=False)
    table = read_paper_table(tmp_path / "t.csv", ["vizwiz_vqa_val"])
    assert len(table) == 13 and table["A"].notna().all()


def test_paper_reader_rejects_unknown_models(tmp_path, paper):
    wide = pd.read_csv(paper)
    wide.loc[0, "model"] = "CLIP999"
    wide.to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(TableError, match="CLIP999"):
        read_paper_table(tmp_path / "t.csv")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.drop(columns="C"), "missing column"),
        (lambda t: pd.concat([t, t.iloc[:1]]), "more than one row"),
        (lambda t: t.assign(score=["x"] + [1.0] * (len(t) - 1)), "not a number"),
    ],
)
def test_tidy_reader_names_the_problem(tmp_path, edit, message):
    table = pd.DataFrame(
        {"encoder": ["e1", "e2", "e3"], "benchmark": "b", "A": [1, 2, 3], "C": [3, 1, 2]}
    ).assign(score=[1.0, 2.0, 3.0])
    edit(table).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(TableError, match=message):
        read_tidy_table(tmp_path / "t.csv")


def test_restrict_to_config_keeps_configured_encoders(capsys):
    table = pd.DataFrame({"encoder": ["a", "b", "c"], "benchmark": "x", "A": 0, "C": 0, "score": 0})
    kept = restrict_to_config(table, ["a", "b", "helper"])
    assert list(kept["encoder"]) == ["a", "b"]
    out = capsys.readouterr().out
    assert "['c']" in out and "['helper']" in out
    with pytest.raises(TableError, match="no row"):
        restrict_to_config(table, ["z"])


# --- regression -----------------------------------------------------------------------------


def test_minmax_maps_to_the_unit_interval():
    assert F.minmax([2.0, 4.0, 3.0]) == pytest.approx([0.0, 1.0, 0.5])
    assert F.minmax([5.0, 5.0]) == pytest.approx([0.0, 0.0])


def test_exact_quadratic_recovers_its_coefficients():
    a, c, y = _quadratic_points()
    coef = F.fit_coefficients("ac_quadratic", a, c, y)
    assert coef == pytest.approx(BETA, abs=1e-9)
    assert F.r2_score(y, F.predict("ac_quadratic", coef, a, c)) == pytest.approx(1.0)
    # LOO of an exact model is exact too.
    assert F.loo_predictions("ac_quadratic", a, c, y) == pytest.approx(y, abs=1e-8)


def test_fit_benchmark_normalises_and_recovers_the_law():
    a, c, y = _quadratic_points()
    # Raw A and C on other scales: normalisation must map them back onto the unit square.
    rows = pd.DataFrame(
        {"encoder": [f"e{i:02d}" for i in range(13)], "A": 0.3 + 0.5 * a, "C": 10 + 20 * c}
    ).assign(score=50 + 30 * y)
    fit = F.fit_benchmark(rows, "quad", resamples=50, random_draws=10)
    assert fit.a == pytest.approx(a) and fit.c == pytest.approx(c)
    low, span = y.min(), y.max() - y.min()
    expected = (BETA - np.r_[low, 0, 0, 0, 0, 0]) / span
    assert fit.law.coef == pytest.approx(expected, abs=1e-9)
    assert fit.law.r2 == pytest.approx(1.0) and fit.law.loo_r2 == pytest.approx(1.0)
    assert fit.law.loo_spearman == pytest.approx(1.0)
    assert fit.law.boot.r2_low == pytest.approx(1.0)
    # Nested models never beat the full quadratic in sample.
    for smaller in ("a_linear", "c_linear", "ac_linear", "a_quadratic", "c_quadratic"):
        assert fit.models[smaller].r2 <= fit.law.r2 + 1e-12


def test_loo_matches_the_hat_matrix_identity():
    """Leave-one-out residuals of least squares are e_i / (1 - h_ii)."""
    rng = np.random.default_rng(3)
    a, c, y = rng.random(13), rng.random(13), rng.random(13)
    x = F.design_matrix("ac_quadratic", a, c)
    hat = x @ np.linalg.pinv(x)
    residual = y - hat @ y
    expected = y - residual / (1 - np.diag(hat))
    assert F.loo_predictions("ac_quadratic", a, c, y) == pytest.approx(expected, abs=1e-9)


def test_loo_is_nan_when_too_few_points_remain():
    rng = np.random.default_rng(0)
    a, c, y = rng.random(6), rng.random(6), rng.random(6)
    assert np.isnan(F.loo_predictions("ac_quadratic", a, c, y)).all()
    assert not np.isnan(F.loo_predictions("ac_linear", a, c, y)).any()


def test_random_inputs_reach_the_chance_r2():
    """With n points and p terms, noise inputs give E[R²] = (p - 1) / (n - 1)."""
    y = np.random.default_rng(0).random(13)
    mean = F.random_input_r2(y, 2000, np.random.default_rng(1))
    assert mean == pytest.approx(5 / 12, abs=0.03)


def test_bootstrap_is_seeded_and_brackets_the_fit():
    rng = np.random.default_rng(5)
    a, c = rng.random(13), rng.random(13)
    y = a + c**2 + 0.1 * rng.standard_normal(13)
    first = F.bootstrap("ac_quadratic", a, c, y, 200, np.random.default_rng(7))
    again = F.bootstrap("ac_quadratic", a, c, y, 200, np.random.default_rng(7))
    assert (first.r2_low, first.r2_high, first.used) == (again.r2_low, again.r2_high, again.used)
    assert 0 < first.used <= 200
    assert first.r2_low < first.r2_high <= 1.0
    coef = F.fit_coefficients("ac_quadratic", a, c, y)
    inside = (first.coef_low <= coef) & (coef <= first.coef_high)
    assert inside.sum() >= 5


# --- region sampler and policy --------------------------------------------------------------


def _check_region_order(points: np.ndarray, order: list[P.Pick]) -> None:
    indices = [p.index for p in order]
    assert sorted(indices) == list(range(len(points)))  # every encoder once, never twice
    levels = [p.level for p in order if p.level >= 0]
    assert levels == sorted(levels)  # coarse to fine
    for level in sorted(set(levels)):
        before = {p.index for p in order if 0 <= p.level < level}
        cells = [tuple(cell) for cell in P.cells_at(points, level)]
        taken = {cells[i] for i in before}
        open_cells = {cells[i] for i in range(len(points)) if cells[i] not in taken}
        picked = [p for p in order if p.level == level]
        # exactly one pick in each cell that was non-empty and untouched when the level began
        assert sorted(p.cell for p in picked) == sorted(open_cells)
        assert all(cells[p.index] == p.cell for p in picked)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_sampler_invariants(seed):
    points = np.random.default_rng(seed).random((25, 2))
    order = P.region_order(points, np.random.default_rng(seed + 10))
    _check_region_order(points, order)
    assert order[0].level == 0


def test_region_sampler_visits_each_quadrant_before_splitting_further():
    points = np.array([[0.1, 0.1], [0.2, 0.2], [0.9, 0.1], [0.1, 0.9], [0.8, 0.8], [0.7, 0.9]])
    for seed in range(20):
        order = P.region_order(points, np.random.default_rng(seed))
        _check_region_order(points, order)
        first_quadrants = {tuple(P.cells_at(points[[p.index]], 1)[0]) for p in order[1:4]}
        assert len(first_quadrants) == 3  # the 3 quadrants the first pick did not touch


def test_region_sampler_ends_on_coincident_points():
    points = np.array([[0.5, 0.5]] * 3 + [[0.0, 0.0], [1.0, 1.0]])
    order = P.region_order(points, np.random.default_rng(0))
    assert sorted(p.index for p in order) == list(range(5))
    assert sum(p.level == -1 for p in order) >= 1


def test_policy_is_deterministic_under_a_seed():
    rng = np.random.default_rng(0)
    a, c = rng.random(13), rng.random(13)
    y = F.design_matrix("ac_quadratic", a, c) @ BETA
    for strategy in ("ac", "random"):
        runs = [P.simulate(a, c, y, 200, 3, np.random.default_rng(42), strategy) for _ in range(2)]
        assert np.array_equal(runs[0], runs[1])
        assert runs[0].min() >= 1 and runs[0].max() <= 13
    other = P.simulate(a, c, y, 200, 3, np.random.default_rng(43), "ac")
    assert not np.array_equal(runs[0], other)


def test_policy_with_k_equal_n_succeeds_once_the_law_can_be_fitted():
    rng = np.random.default_rng(0)
    a, c, y = rng.random(8), rng.random(8), rng.random(8)
    needed = P.simulate(a, c, y, 50, 8, np.random.default_rng(0), "ac")
    # One finetune: no law yet, so success only if that one is the best; two: all are ranked.
    assert set(needed.tolist()) == {1, 2}
    success = P._SuccessCache(a, c, y, k=8, min_fit=2)
    best, other = int(np.argmax(y)), int(np.argmin(y))
    assert P.finetunes_needed([best, other], 8, success) == 1
    assert P.finetunes_needed([other, best], 8, success) == 2


def test_ranking_uses_measured_scores_where_known():
    a = np.array([0.0, 0.5, 1.0, 0.2])
    c = np.array([0.0, 1.0, 0.5, 0.3])
    y = np.array([1.0, 5.0, 3.0, 0.0])
    known = np.array([True, True, True, False])
    scores = P.ranking_scores(a, c, y, known)
    assert scores[:3] == pytest.approx([0.0, 1.0, 0.5])  # min-max over the known ones
    assert np.isfinite(scores[3])
    assert np.isnan(P.ranking_scores(a, c, y, np.array([True, False, False, False]))[1:]).all()


def test_recall_curve_is_the_share_found_by_each_budget():
    assert P.recall_curve(np.array([1, 2, 2, 4]), 4) == pytest.approx([0.25, 0.75, 0.75, 1.0])


# --- outputs of a run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory, project_root):
    out = tmp_path_factory.mktemp("law")
    table = read_paper_table(project_root / PAPER)
    settings = LawSettings.from_values(
        {"trials": 200, "bootstrap": 100, "random_draws": 20}, seed=0, source="paper"
    )
    return write_law_outputs(table, out, settings)


@pytest.mark.slow
def test_paper_run_writes_every_output(paper_run):
    for name in LAW_FILES:
        assert paper_run[name].stat().st_size > 0, name
    assert paper_run["law.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in paper_run["law.svg"].read_bytes()[:2000]
    assert "| mean |" in paper_run["summary.md"].read_text()


def test_paper_run_reproduces_the_fit(paper_run):
    r2 = pd.read_csv(paper_run["r2.csv"])
    assert tuple(r2.columns) == R2_COLUMNS
    assert list(r2["benchmark"])[-1] == "mean" and len(r2) == 9
    rows = r2.set_index("benchmark")
    # Pinned numbers of the released table (AC quadratic, in sample).
    assert rows.at["mme", "r2_ac_quadratic"] == pytest.approx(0.974, abs=2e-3)
    assert rows.at["mmbench_en", "r2_ac_quadratic"] == pytest.approx(0.963, abs=2e-3)
    assert rows.at["mean", "r2_ac_quadratic"] == pytest.approx(0.905, abs=2e-3)
    per = rows.drop(index="mean")
    assert (per["r2_ac_quadratic"] >= per[["r2_a_quadratic", "r2_c_quadratic"]].max(axis=1)).all()
    assert (per["loo_r2_ac_quadratic"] < per["r2_ac_quadratic"]).all()
    coef = pd.read_csv(paper_run["coefficients.csv"])
    law = coef[(coef.model == "ac_quadratic") & (coef.benchmark == "mme")]
    assert list(law["term"]) == ["1", "A", "C", "A^2", "AC", "C^2"]


def test_paper_run_policy_table(paper_run):
    policy = pd.read_csv(paper_run["policy.csv"])
    assert list(policy.columns) == [
        "benchmark",
        "best_encoder",
        "mean_finetunes_ac",
        "mean_finetunes_random",
        "recall_at_3_budget_3",
        "recall_at_3_budget_4",
    ]
    best = policy.set_index("benchmark")["best_encoder"]
    assert best["mme"] == "clip336" and best["seed_image"] == "clip336+dinov2"
    assert ((policy["mean_finetunes_ac"] >= 1) & (policy["mean_finetunes_ac"] <= 13)).all()
    assert (policy["recall_at_3_budget_4"] >= policy["recall_at_3_budget_3"]).all()
    curves = pd.read_csv(paper_run["policy_curves.csv"])
    ends = curves[curves.budget == 13]
    assert ends["recall_at_k"].to_numpy() == pytest.approx(1.0)
    sums = curves.groupby(["benchmark", "strategy"])["stopped_fraction"].sum()
    assert sums.to_numpy() == pytest.approx(1.0)


# --- config and command line ----------------------------------------------------------------


def test_law_config_defaults_and_errors(minimal_config):
    config = check_config(minimal_config)
    assert config["law"] == {
        "scores_table": None,
        "table_format": "tidy",
        "trials": 1000,
        "k": 3,
        "budgets": [3, 4],
        "bootstrap": 1000,
        "random_draws": 100,
        "confidence": 0.95,
        "a_definition": "cosine",
        "strategies": False,
        "figure_units": "raw",
    }
    with pytest.raises(ConfigError, match="law.trials"):
        check_config({**minimal_config, "law": {"trials": 0}})
    with pytest.raises(ConfigError, match="law"):
        check_config({**minimal_config, "law": {"scores": "x.csv"}})


def test_cli_recommend_on_the_paper_table(paper, capsys):
    finetuned = ["clip224", "sd15", "dinov2"]
    args = ["recommend", "--scores", str(paper), "--format", "paper_v1"]
    args += ["--benchmark", "mmbench_en", "--finetuned", *finetuned]
    assert main(args) == 0
    out = capsys.readouterr().out
    next_name = out.split("next encoder to finetune: ")[1].split()[0]
    assert next_name in PAPER_ENCODERS.values() and next_name not in finetuned
    ranking = out.split("elsewhere):\n")[1].splitlines()
    assert len(ranking) == 1 + 13
    assert sum("measured" in line for line in ranking) == 3
    assert main(args) == 0 and next_name in capsys.readouterr().out  # same seed, same pick


def test_cli_recommend_joint_with_strategy_weights_and_intervals(paper, capsys):
    args = ["recommend", "--scores", str(paper), "--format", "paper_v1"]
    args += ["--benchmark", "mmbench_en", "mme", "--strategy", "bayes_ucb", "--weights", "mme=2"]
    few = ["clip224", "sd15", "dinov2"]
    assert main([*args, "--finetuned", *few]) == 0
    out = capsys.readouterr().out
    assert "strategy bayes_ucb" in out
    assert "warning: only 3 encoder(s) measured" in out  # 6 terms + 2 = 8 needed
    ranking = out.split("elsewhere):\n")[1].splitlines()
    assert "mmbench_en" in ranking[0] and "mme" in ranking[0]
    for line in ranking[1:]:
        if "predicted" in line:  # raw units: MME's scores are in the hundreds, with intervals
            low, high = (float(v) for v in line.split("[")[-1].rstrip("]").split(", "))
            assert 100 < low < float(line.split("[")[-2].split()[-1]) < high
    many = ["clip224", "clip336", "sd15", "dinov2", "openclip", "sdxl", "dit", "siglip_b"]
    assert main([*args, "--finetuned", *many]) == 0
    assert "warning" not in capsys.readouterr().out
    assert main([*args, "--weights", "nope=1"]) == 2
    assert "policy.weights" in capsys.readouterr().err


def test_cli_recommend_on_a_table_with_blank_scores(tmp_path, capsys):
    table = pd.DataFrame(
        {
            "encoder": ["e1", "e2", "e3", "e4", "e5"],
            "A": [0.1, 0.9, 0.5, 0.2, 0.8],
            "C": [0.1, 0.2, 0.9, 0.8, 0.7],
            "score": [10.0, 30.0, None, None, None],
        }
    )
    table.to_csv(tmp_path / "t.csv", index=False)
    assert read_candidates(tmp_path / "t.csv")["score"].isna().sum() == 3
    assert main(["recommend", "--scores", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "2 of 5 encoders finetuned" in out
    assert out.split("next encoder to finetune: ")[1].split()[0] in {"e3", "e4", "e5"}


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["recommend", "--scores", str(tmp_path / "missing.csv")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help"])
    assert info.value.code == 0


def test_cli_fit_writes_the_outputs(tmp_path, paper):
    args = ["fit", "--scores", str(paper), "--format", "paper_v1", "--out-dir", str(tmp_path)]
    args += ["--benchmarks", "mme", "textvqa_val", "--trials", "50", "--bootstrap", "20"]
    assert main(args) == 0
    r2 = pd.read_csv(tmp_path / "r2.csv")
    assert list(r2["benchmark"]) == ["mme", "textvqa_val", "mean"]

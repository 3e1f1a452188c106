"""Finetuning strategies: the Bayesian law, their evaluation on the paper's table under the
held-out protocols (the leak and encoder-order tests), and the policy mode's round decisions
(picks, stop rules, supplied scores)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from helpers.paths import ROOT
from vislaw.law.fit import LAW_MODEL, design_matrix, fit_coefficients
from vislaw.law.policy_mode.decide import decide_round
from vislaw.law.policy_mode.rounds import RoundDecision, read_round, rounds_table, write_round
from vislaw.law.policy_mode.state import PolicyState
from vislaw.law.settings import PolicySettings
from vislaw.law.simulate import (
    COLUMNS,
    PROTOCOLS,
    RANDOMISED,
    SIMULATED,
    Released,
    best_strategy,
    chance_in_top,
    held_out_prior,
    run_policy,
    strategy_table,
)
from vislaw.law.strategies import Prior, order_with_random_ties, posterior
from vislaw.law.tables import read_scores_table


def policy(**values) -> PolicySettings:
    """Policy settings with these keys, the schema's defaults for the others."""
    return PolicySettings.from_values(values, seed=0)


@pytest.fixture(scope="module")
def paper_table():
    return read_scores_table(ROOT / "resources/paper/ablations_t.csv", "paper_v1")


def test_posterior_with_a_weak_prior_is_the_least_squares_law():
    rng = np.random.default_rng(0)
    a, c = rng.random(20), rng.random(20)
    y = 0.2 + a - 0.5 * c * c + 0.01 * rng.standard_normal(20)
    y = (y - y.min()) / (y.max() - y.min())
    phi = design_matrix(LAW_MODEL, a, c)
    known = np.ones(20, dtype=bool)
    known[:3] = False
    mean, sd = posterior(phi, y, known, Prior.ridge(1e-9), noise=1e-4)
    yk = y[known]
    yk = (yk - yk.min()) / (yk.max() - yk.min())
    coef = fit_coefficients(LAW_MODEL, a[known], c[known], yk)
    np.testing.assert_allclose(mean[:3], phi[:3] @ coef, atol=1e-4)
    assert (sd[:3] > 0).all() and (sd[known] == 0).all()


def _relabelled(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The same table with its encoders renamed and listed in another order (so that neither
    their position nor the alphabetical order of their names is the original one)."""
    encoders = list(dict.fromkeys(table["encoder"]))
    rank = dict(zip(encoders, np.random.default_rng(seed).permutation(len(encoders)), strict=True))
    out = table.assign(encoder=table["encoder"].map(lambda e: f"x{rank[e]:02d}"))
    return out.sort_values(["benchmark", "encoder"], kind="stable").reset_index(drop=True)


@pytest.mark.slow
def test_strategy_table_has_every_protocol_strategy_and_metric(paper_table):
    table = strategy_table(paper_table, trials=20, budgets=(3, 4), seed=0)
    assert tuple(table.columns) == COLUMNS
    assert set(table["protocol"]) == set(PROTOCOLS)
    assert set(table["strategy"]) == set(SIMULATED) and set(table["budget"]) == {3, 4}
    assert len(table) == len(PROTOCOLS) * len(SIMULATED) * 2
    rates = table[["best_finetuned", "set_recall_at_3", "paper_recall_at_3"]].to_numpy()
    assert ((rates >= 0) & (rates <= 1)).all()
    assert (table["regret"] >= 0).all() and (table[["best_finetuned_se", "regret_se"]] >= 0).all(
        None
    )
    # a budget of 4 finetunes at least what 3 did: each run extends its own first 3 picks
    by = table.set_index(["protocol", "strategy", "budget"])
    for protocol, strategy in {(p, s) for p, s, _ in by.index}:
        three, four = by.loc[(protocol, strategy, 3)], by.loc[(protocol, strategy, 4)]
        assert four["best_finetuned"] >= three["best_finetuned"] - 1e-12
        assert four["regret"] <= three["regret"] + 1e-12
    # the default in the schema is the one the strict protocol picks (docs/policy.md)
    assert policy().strategy == best_strategy(table)


def _rewritten(y: np.ndarray, later: list[int], kind: int) -> np.ndarray:
    """Scores of ``later`` replaced: all above the best, all below the worst, or shuffled."""
    rng, out = np.random.default_rng(kind), y.copy()
    if kind == 0:
        out[later] = y.max() + np.linspace(1.0, 5.0, len(later))[::-1]
    elif kind == 1:
        out[later] = y.min() - rng.random(len(later)) * np.ptp(y)
    else:
        out[later] = y[later][rng.permutation(len(later))]
    return out


@pytest.mark.parametrize("strategy", SIMULATED)
def test_held_out_scores_change_no_earlier_pick(paper_table, strategy):
    """The leak test: under held_out_benchmark, what the policy has not finetuned yet of the
    scored benchmark cannot steer a pick (its prior is learned from the other benchmarks).
    With the scored benchmark's own law in the prior (the old simulation's leak), the
    Bayesian strategies fail this on the paper's table."""
    data = Released.from_tidy(paper_table)
    settings = policy(strategy=strategy)
    budget, n = 5, len(data.encoders)
    for j in range(len(data.benchmarks)):
        picks = run_policy(
            data, settings, held_out_prior(data, j), budget, np.random.default_rng(1)
        )
        for t in range(budget):
            later = [i for i in range(n) if i not in picks[:t]]
            for kind in range(3):
                changed = replace(data, y=data.y.copy())
                changed.y[j] = _rewritten(data.y[j], later, kind)
                again = run_policy(
                    changed, settings, held_out_prior(changed, j), budget, np.random.default_rng(1)
                )
                assert again[: t + 1] == picks[: t + 1], (data.benchmarks[j], t, kind)


@pytest.mark.slow
def test_encoder_order_changes_no_figure(paper_table):
    """Renaming and reordering the encoders: deterministic strategies give the same figures
    (ties are drawn, not taken by position or name); randomised ones and noise draws agree
    within MC error."""
    protocols = ("held_out_benchmark", "shared_start", "noisy_5")
    kwargs = dict(trials=60, budgets=(3, 4), seed=0, protocols=protocols)
    first = strategy_table(paper_table, **kwargs).set_index(["protocol", "strategy", "budget"])
    again = strategy_table(_relabelled(paper_table, 1), **kwargs).set_index(first.index.names)
    again = again.loc[first.index]
    exact = ~first.index.get_level_values("strategy").isin(RANDOMISED) & (
        first.index.get_level_values("protocol") != "noisy_5"
    )
    metrics = ["best_finetuned", "regret", "set_recall_at_3", "paper_recall_at_3"]
    np.testing.assert_allclose(again.loc[exact, metrics], first.loc[exact, metrics], atol=1e-9)
    for metric in ("best_finetuned", "regret"):
        se = np.hypot(first[f"{metric}_se"], again[f"{metric}_se"])
        assert (np.abs(first[metric] - again[metric]) <= 4 * se + 1e-9).all(), metric


def test_tied_ranks_count_by_their_share_of_the_places():
    scores = np.array([0.0, 0.0, 0.0, 0.0, np.nan, 1.0])
    assert chance_in_top(scores, {0}) == pytest.approx(2 / 4)
    assert chance_in_top(scores, {5}) == 1.0 and chance_in_top(scores, {4}) == 0.0


def test_ties_in_picks_are_drawn_not_taken_by_position():
    values = np.array([1.0, 1.0, 1.0, 0.5])
    firsts = {int(order_with_random_ties(values, np.random.default_rng(s))[0]) for s in range(40)}
    assert firsts == {0, 1, 2}
    assert int(order_with_random_ties(values, np.random.default_rng(0))[-1]) == 3


def _state(known: dict[str, float]) -> PolicyState:
    encoders = [f"e{i}" for i in range(6)]
    a = np.array([[0.1, 0.3, 0.5, 0.7, 0.9, 0.2], [0.2, 0.3, 0.6, 0.6, 1.0, 0.1]])
    c = np.array([10.0, 20.0, 30.0, 40.0, 50.0, 15.0])
    y = np.full((2, 6), np.nan)
    for name, value in known.items():
        i = encoders.index(name)
        y[:, i] = [value, 2 * value]
    return PolicyState(encoders, ["b1", "b2"], a, c, y)


@pytest.mark.parametrize("strategy", SIMULATED)
def test_round_picks_unmeasured_encoders_and_stops_at_the_budget(strategy):
    prior = np.array([[0.0, 0.5, 0.5, 0.0, 0.0, 0.0], [0.1, 0.4, 0.6, 0.0, 0.0, 0.0]])
    settings = policy(strategy=strategy, budget=2, per_round=2, stop_z=10.0)
    first = decide_round(0, _state({"e0": 1.0}), [], settings, prior)
    assert len(first.picks) == 2 and "e0" not in first.picks
    assert first.finetuned == ["e0"]  # supplied elsewhere: measured, no budget spent
    scores = {"e0": 1.0, **{name: 2.0 + i for i, name in enumerate(first.picks)}}
    second = decide_round(1, _state(scores), first.picks, settings, prior)
    assert second.stop and "budget" in second.why and second.picks == []
    table = rounds_table([first, second])
    assert list(table["round"]) == [0, 1] and table["stop"].tolist() == [False, True]


def test_a_round_is_one_record_whose_json_reads_back_equal(tmp_path):
    prior = np.array([[0.0, 0.5, 0.5, 0.0, 0.0, 0.0], [0.1, 0.4, 0.6, 0.0, 0.0, 0.0]])
    decision = decide_round(2, _state({"e0": 1.0, "e3": 2.0}), ["e3"], policy(), prior)
    write_round(tmp_path / "2.json", decision)
    assert read_round(tmp_path / "2.json") == decision
    data = json.loads((tmp_path / "2.json").read_text())  # the file keeps the JSON the rules read
    assert data["ordered"] == ["e3"] and data["picks"] == decision.picks
    assert decision.next_ordered == ["e3", *decision.picks]
    del data["ranking"]
    with pytest.raises(ValueError, match=r"bad\.json.*\['ranking'\]"):
        RoundDecision.from_json(data, "bad.json")


def test_settled_stop_when_no_unmeasured_encoder_can_win():
    scores = {f"e{i}": float(i) for i in range(5)}  # e4: best measured; e5 predicted low
    settled = decide_round(
        3, _state(scores), list(scores), policy(strategy="ucb", budget=10, stop_z=1.0)
    )
    assert settled.stop and settled.why.startswith("settled"), settled.why
    assert settled.top_k[0].encoder == "e4" and settled.top_k[0].measured
    # a wide enough bound keeps e5 in play: not settled, e5 is the one left to finetune
    open_ = decide_round(
        3, _state(scores), list(scores), policy(strategy="ucb", budget=10, stop_z=10.0)
    )
    assert not open_.stop and open_.picks == ["e5"]


def test_unknown_weights_name_the_key():
    settings = policy(strategy="ucb", weights={"nope": 1.0})
    with pytest.raises(ValueError, match="policy.weights"):
        decide_round(0, _state({}), [], settings)


def test_prior_strategies_need_a_prior():
    with pytest.raises(ValueError, match="prior_table"):
        decide_round(0, _state({}), [], policy(strategy="bayes_ucb"))


def test_rounds_table_is_empty_safe():
    assert isinstance(rounds_table([]), pd.DataFrame)


def test_strategy_table_needs_three_benchmarks(paper_table):
    two = paper_table[paper_table["benchmark"].isin(["mme", "mmmu_val"])]
    with pytest.raises(ValueError, match="law.strategies"):
        strategy_table(two, trials=10, budgets=(3,), seed=0)


@pytest.mark.parametrize("strategy", ["order_a", "order_c", "order_ac", "greedy_law"])
def test_score_free_orders_pick_by_their_key(strategy):
    state = _state({})
    settings = policy(strategy=strategy, budget=6, per_round=6)
    picks = decide_round(0, state, [], settings).picks
    a = np.mean([(r - r.min()) / np.ptp(r) for r in state.a], axis=0)
    c = (state.c - state.c.min()) / np.ptp(state.c)
    key = {"order_a": a, "order_c": c}.get(strategy, a + c)  # greedy: A + C below 2 measured
    assert picks == [f"e{i}" for i in np.argsort(-key, kind="stable")]


def test_batch_picks_start_with_the_single_pick():
    prior = np.array([[0.0, 0.5, 0.5, 0.0, 0.0, 0.0], [0.1, 0.4, 0.6, 0.0, 0.0, 0.0]])
    state = _state({"e0": 1.0, "e3": 2.0})
    one = decide_round(0, state, [], policy(budget=5, per_round=1), prior)
    three = decide_round(0, state, [], policy(budget=5, per_round=3), prior)
    assert three.picks[0] == one.picks[0]
    assert len(set(three.picks)) == 3 and not {"e0", "e3"} & set(three.picks)

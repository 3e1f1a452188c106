"""The policy mode (``targets: [policy]``): finetune only the encoders the law says are worth it.

Every encoder has A (stage 1 only) and C. Round r reads the scores of the encoders finetuned so
far (the policy's earlier picks, plus any supplied in ``policy.scores_file``), fits the law per
benchmark (Bayesian linear regression, :mod:`vislaw.law.strategies`), ranks the encoders by
the weighted mean of their normalised scores and either picks ``policy.per_round`` encoders to
finetune next or stops. Each round is one small JSON (``policy/rounds/<r>.json``), so a re-run
continues from the last one; ``policy/rounds.csv``, ``recommendation.md`` and
``predicted_vs_measured.png`` gather them.

Stop rule (in this order): ``budget`` (the policy has ordered ``policy.budget`` finetunes);
``all finetuned``; ``settled``: at least ``policy.min_finetunes`` encoders are measured, the
top-ranked encoder is one of them, and no unmeasured encoder's upper bound (posterior mean +
``policy.stop_z`` sd of the weighted score) reaches the best measured weighted score.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from vislaw.law.fit import (
    LAW_MODEL,
    fit_coefficients,
    loo_predictions,
    minmax,
    predict,
    r2_score,
)
from vislaw.law.policy import next_region_pick, ranking_scores
from vislaw.law.settings import PolicySettings
from vislaw.law.strategies import (
    PRIOR_STRATEGIES,
    SCORE_FREE,
    BenchmarkState,
    joint_acquisition,
    joint_step,
    law_coefficients,
    make_prior,
    order_with_random_ties,
    score_free_key,
)

if TYPE_CHECKING:
    from vislaw.eval.tasks import Scale


@dataclass
class PolicyState:
    """Encoders x benchmarks: raw A (per benchmark), raw C, raw score (NaN: not finetuned)."""

    encoders: list[str]
    benchmarks: list[str]
    a: np.ndarray  # (benchmarks, encoders)
    c: np.ndarray  # (encoders,)
    y: np.ndarray  # (benchmarks, encoders)

    @property
    def known(self) -> np.ndarray:
        return ~np.isnan(self.y).any(axis=0)


def build_state(
    a_scores: pd.DataFrame,
    c_scores: pd.DataFrame,
    scores: pd.DataFrame,
    encoders: Sequence[str],
    benchmarks: Sequence[str],
    a_column: str = "a_cosine",
) -> PolicyState:
    """Join the A/C tables and the scores (encoder, benchmark, score) known so far."""
    a_table = a_scores.pivot(index="benchmark", columns="encoder", values=a_column)
    c_table = c_scores.set_index("encoder")["pck10_image"] * 100.0
    missing = [e for e in encoders if e not in c_table.index or e not in a_table.columns]
    if missing:
        raise ValueError(f"policy: no A or C score for encoders {missing}")
    y = np.full((len(benchmarks), len(encoders)), np.nan)
    for row in scores.itertuples():
        if row.encoder in encoders and row.benchmark in benchmarks:
            y[list(benchmarks).index(row.benchmark), list(encoders).index(row.encoder)] = row.score
    return PolicyState(
        list(encoders),
        list(benchmarks),
        a_table.loc[list(benchmarks), list(encoders)].to_numpy(dtype=float),
        c_table.loc[list(encoders)].to_numpy(dtype=float),
        y,
    )


def prior_coefficients(table: pd.DataFrame | None) -> np.ndarray | None:
    """The law's coefficients of every benchmark of a tidy table (the learned prior's data)."""
    if table is None:
        return None
    return np.array(
        [
            law_coefficients(g["A"].to_numpy(), g["C"].to_numpy(), g["score"].to_numpy())
            for _, g in table.groupby("benchmark", sort=False)
        ]
    )


def _weights(settings: PolicySettings, benchmarks: Sequence[str]) -> np.ndarray:
    unknown = sorted(set(settings.weights) - set(benchmarks))
    if unknown:
        raise ValueError(f"policy.weights: not configured benchmarks: {unknown}")
    w = np.array([float(settings.weights.get(b, 1.0)) for b in benchmarks])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError("policy.weights: need non-negative weights with a positive sum")
    return w / w.sum()


def _states(state: PolicyState, settings: PolicySettings, prior: np.ndarray | None):
    base = settings.strategy if settings.strategy in ("bayes_ucb", "bayes_ei", "ucb") else "ucb"
    if base in PRIOR_STRATEGIES and prior is None:
        raise ValueError(f"policy.strategy '{base}' needs policy.prior_table")
    weights = _weights(settings, state.benchmarks)
    shared = make_prior(base, settings.params, prior)  # one prior serves every benchmark
    c = minmax(state.c)
    states = [
        BenchmarkState(
            minmax(state.a[j]), c, np.nan_to_num(state.y[j]), shared, weight=float(weights[j])
        )
        for j in range(len(state.benchmarks))
    ]
    return base, states, weights


def posterior_by_benchmark(
    state: PolicyState, settings: PolicySettings, prior: np.ndarray | None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each benchmark's posterior mean and sd of the normalised score (the strategy's own
    Bayesian law; the ridge prior's for the strategies that use none)."""
    base, states, _ = _states(state, settings, prior)
    _, means, sds = joint_step(base, states, state.known, settings.params)
    return means, sds


def _ranking(state: PolicyState, settings: PolicySettings, means, sds, weights):
    """Weighted normalised score (mean, sd) per encoder; the plain law's for region/random."""
    known = state.known
    if settings.strategy not in ("bayes_ucb", "bayes_ei", "ucb"):
        means = [
            np.nan_to_num(
                ranking_scores(
                    minmax(state.a[j]), minmax(state.c), np.nan_to_num(state.y[j]), known
                )
            )
            for j in range(len(state.benchmarks))
        ]
    mean = np.sum([w * m for w, m in zip(weights, means, strict=True)], axis=0)
    sd = np.sqrt(np.sum([(w * s) ** 2 for w, s in zip(weights, sds, strict=True)], axis=0))
    return mean, sd


def law_fit(state: PolicyState) -> tuple[float, float]:
    """Mean in-sample and mean leave-one-out R² over benchmarks of the least-squares law on
    the finetuned encoders (NaN under 3, LOO NaN until every held-out fit is determined)."""
    known = state.known
    if known.sum() < 3:
        return float("nan"), float("nan")
    r2s, loos = [], []
    for j in range(len(state.benchmarks)):
        a, c, y = minmax(state.a[j][known]), minmax(state.c[known]), minmax(state.y[j][known])
        r2s.append(r2_score(y, predict(LAW_MODEL, fit_coefficients(LAW_MODEL, a, c, y), a, c)))
        held_out = loo_predictions(LAW_MODEL, a, c, y)
        loos.append(r2_score(y, held_out) if np.isfinite(held_out).all() else np.nan)
    mean = [float(np.nanmean(v)) if not np.isnan(v).all() else float("nan") for v in (r2s, loos)]
    return mean[0], mean[1]


def score_bounds(
    state: PolicyState, weights: np.ndarray, scales: Mapping[str, Scale | None] | None
) -> tuple[float, float] | None:
    """The range the weighted normalised score can take: each benchmark's recorded range
    (vislaw.eval.tasks.Scale) in the units of its normalisation (0 = worst, 1 = best measured),
    weighted. None when a benchmark's range is unknown or fewer than 2 encoders differ."""
    known = state.known
    if not scales or known.sum() < 2:
        return None
    low = high = 0.0
    for j, (name, w) in enumerate(zip(state.benchmarks, weights, strict=True)):
        scale = scales.get(name)
        y_low, y_high = np.nanmin(state.y[j][known]), np.nanmax(state.y[j][known])
        if scale is None or y_high <= y_low:
            return None
        low += w * (scale.low - y_low) / (y_high - y_low)
        high += w * (scale.high - y_low) / (y_high - y_low)
    return float(low), float(high)


def _raw_predictions(state: PolicyState, means) -> dict[str, dict[str, float]]:
    """Per benchmark, the posterior means mapped to the measured scale (>= 2 finetuned)."""
    known = state.known
    out: dict[str, dict[str, float]] = {}
    if known.sum() < 2:
        return out
    for j, name in enumerate(state.benchmarks):
        low, high = np.nanmin(state.y[j][known]), np.nanmax(state.y[j][known])
        raw = means[j] * (high - low) + low
        out[name] = {e: float(raw[i]) for i, e in enumerate(state.encoders)}
    return out


def _law_predictions(state: PolicyState, known: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted normalised score by the plain least-squares law (measured where known)."""
    return np.sum(
        [
            w
            * ranking_scores(minmax(state.a[j]), minmax(state.c), np.nan_to_num(state.y[j]), known)
            for j, w in enumerate(weights)
        ],
        axis=0,
    )


def _values(state, settings, base, states, known, weights) -> np.ndarray:
    """The value of finetuning each encoder for the deterministic strategies (higher first;
    -inf where finetuned)."""
    strategy = settings.strategy
    if strategy in SCORE_FREE or (strategy == "greedy_law" and known.sum() < 2):
        # below two measured encoders the plain law has nothing to fit: greedy starts as A + C
        key = "order_ac" if strategy == "greedy_law" else strategy
        value = score_free_key(key, np.array([s.a for s in states]), minmax(state.c))
    elif strategy == "greedy_law":
        value = _law_predictions(state, known, weights)
    else:
        value, _, _ = joint_acquisition(base, states, known, settings.params)
    return np.where(known, -np.inf, value)


def pick_next(
    state: PolicyState,
    settings: PolicySettings,
    prior: np.ndarray | None,
    count: int,
    rnd: np.random.Generator,
) -> list[int]:
    """The next ``count`` encoders ``settings.strategy`` finetunes given ``state``'s measured
    scores (it reads no other score). The simulation (vislaw.law.simulate) calls this too, so
    the figures it reports are those of the mode itself. Deterministic strategies take the
    ``count`` largest values of this round (no scores are imagined for encoders still
    training), exact ties in a random order drawn from ``rnd``."""
    known = state.known.copy()
    count = min(count, int((~known).sum()))
    if settings.strategy not in ("random", "region"):
        base, states, weights = _states(state, settings, prior)
        value = _values(state, settings, base, states, known, weights)
        return [int(i) for i in order_with_random_ties(value, rnd)[:count]]
    picks = []
    points = np.column_stack([np.mean([minmax(a) for a in state.a], axis=0), minmax(state.c)])
    for _ in range(count):
        if settings.strategy == "random":
            pick = int(rnd.choice(np.flatnonzero(~known)))
        else:
            pick = next_region_pick(points, known, rnd).index
        picks.append(pick)
        known[pick] = True
    return picks


def decide_round(
    round_index: int,
    state: PolicyState,
    ordered: Sequence[str],
    settings: PolicySettings,
    prior: np.ndarray | None = None,
    scales: Mapping[str, Scale | None] | None = None,
) -> dict:
    """One round: the ranking so far, and the next picks or the reason to stop (a JSON dict).
    ``scales``: each benchmark's recorded range; the top-k intervals are clipped to what the
    weighted score can reach (``bounds`` in the JSON; None: unknown, not clipped)."""
    known = state.known
    base, states, weights = _states(state, settings, prior)
    _, means, sds = joint_step(base, states, known, settings.params)
    mean, sd = _ranking(state, settings, means, sds, weights)
    order = np.argsort(-mean, kind="stable")
    bounds = score_bounds(state, weights, scales)
    lo, hi = bounds if bounds is not None else (-np.inf, np.inf)
    top = [
        {
            "encoder": state.encoders[i],
            "score": float(np.clip(mean[i], lo, hi)),
            "low": float(np.clip(mean[i] - 1.96 * sd[i], lo, hi)),
            "high": float(np.clip(mean[i] + 1.96 * sd[i], lo, hi)),
            "measured": bool(known[i]),
        }
        for i in order[: settings.k]
    ]
    r2, loo_r2 = law_fit(state)
    stop, why = _stop_reason(state, settings, ordered, mean, sd, order)
    picks: list[str] = []
    if not stop:
        rnd = np.random.default_rng([settings.seed, round_index])
        count = min(settings.per_round, settings.budget - len(ordered))
        picks = [state.encoders[i] for i in pick_next(state, settings, prior, count, rnd)]
        why = _why(settings, picks, mean, sd, state.encoders)
    return {
        "round": round_index,
        "strategy": settings.strategy,
        "finetuned": [e for e, k in zip(state.encoders, known, strict=True) if k],
        "ordered": list(ordered),
        "picks": picks,
        "stop": stop,
        "why": why,
        "law_r2": r2 if np.isfinite(r2) else None,  # JSON has no NaN
        "law_loo_r2": loo_r2 if np.isfinite(loo_r2) else None,
        "bounds": list(bounds) if bounds is not None else None,
        "n_measured": int(known.sum()),
        "top_k": top,
        "ranking": {e: [float(mean[i]), float(sd[i])] for i, e in enumerate(state.encoders)},
        "raw_predictions": _raw_predictions(state, means),
        "measured": {
            b: {e: float(state.y[j][i]) for i, e in enumerate(state.encoders) if known[i]}
            for j, b in enumerate(state.benchmarks)
        },
    }


def _stop_reason(state, settings, ordered, mean, sd, order) -> tuple[bool, str]:
    known = state.known
    if known.all():
        return True, "every encoder is finetuned"
    if len(ordered) >= settings.budget:
        return True, f"budget of {settings.budget} finetunes spent"
    if known.sum() >= settings.min_finetunes and known[order[0]]:
        best = mean[known].max()
        bound = (mean + settings.stop_z * sd)[~known].max()
        if bound < best:
            return True, (
                f"settled: no unmeasured encoder's upper bound ({bound:.3f}, mean + "
                f"{settings.stop_z:g} sd) reaches the best measured ({best:.3f})"
            )
    return False, ""


def _why(settings, picks, mean, sd, encoders) -> str:
    if settings.strategy == "random":
        return "uniformly random among the unfinetuned encoders"
    if settings.strategy == "region":
        return "region sampler: a random encoder from a random open cell of the (A, C) square"
    if settings.strategy in SCORE_FREE:
        return f"score-free order {settings.strategy}: the highest key not yet finetuned"
    if settings.strategy == "greedy_law":
        return "greedy: the largest weighted prediction of the least-squares law (A + C first)"
    parts = []
    for name in picks:
        i = encoders.index(name)
        parts.append(f"{name}: predicted {mean[i]:.3f} ± {sd[i]:.3f}")
    kind = "expected improvement" if settings.strategy == "bayes_ei" else "upper bound"
    return f"largest {kind} of the weighted score ({'; '.join(parts)})"


def write_round(path: str | Path, decision: dict) -> None:
    from vislaw.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(decision, indent=1, sort_keys=True))


def read_round(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def _interval_text(entry: Mapping) -> str:
    tag = "measured" if entry["measured"] else "predicted"
    return (
        f"{entry['encoder']} {entry['score']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}] {tag}"
    )


def rounds_table(decisions: Sequence[Mapping]) -> pd.DataFrame:
    """``rounds.csv``: one row per round."""
    return pd.DataFrame(
        [
            {
                "round": d["round"],
                "picked": " ".join(d["picks"]),
                "why": d["why"],
                "n_measured": d["n_measured"],
                "finetuned": " ".join(d["finetuned"]),
                "law_r2": np.nan if d["law_r2"] is None else d["law_r2"],
                "law_loo_r2": np.nan if d.get("law_loo_r2") is None else d["law_loo_r2"],
                "top_k": "; ".join(_interval_text(t) for t in d["top_k"]),
                "stop": d["stop"],
            }
            for d in decisions
        ]
    )


def fit_text(decision: Mapping) -> str:
    """The fit statement of a round (vislaw.law.fit.fit_statement): n, in-sample and
    leave-one-out R², or that the fit is under-determined and no R² is evidence."""
    from vislaw.law.fit import fit_statement

    nan = float("nan")
    r2, loo = decision.get("law_r2"), decision.get("law_loo_r2")
    return fit_statement(
        decision["n_measured"], nan if r2 is None else r2, nan if loo is None else loo
    )


def _bounds_text(decision: Mapping) -> str:
    bounds = decision.get("bounds")
    if not bounds:
        return ""
    return (
        f", clipped to [{bounds[0]:.3f}, {bounds[1]:.3f}], what the benchmarks' ranges allow "
        "(0 = the worst, 1 = the best measured encoder)"
    )


def policy_choice(decision: Mapping) -> str | None:
    """The policy's choice in a round: the best *measured* encoder by its ranking (a prediction
    is no result); None when nothing was measured."""
    measured = decision["finetuned"]
    return max(measured, key=lambda e: decision["ranking"][e][0]) if measured else None


def recommendation_markdown(decisions: Sequence[Mapping], budget: int) -> str:
    """``recommendation.md``: the final choice (the best *measured* encoder: a prediction is
    no result) and how sure the law is that no unmeasured encoder beats it."""
    from scipy.special import ndtr

    last = decisions[-1]
    ranking = last["ranking"]
    measured = list(last["finetuned"])
    lines = ["# Policy recommendation", ""]
    if measured:
        choice = policy_choice(last)
        best = ranking[choice][0]
        lines.append(
            f"**Choose `{choice}`**: the best measured encoder (weighted normalised score "
            f"{best:.3f})."
        )
    else:
        choice, best = None, float("-inf")
        lines.append("**No encoder is measured yet**: no choice can be made.")
    rivals = {e: (m, sd) for e, (m, sd) in ranking.items() if e not in measured}
    chances = {
        e: float(ndtr((m - best) / sd)) if sd > 0 else float(m > best)
        for e, (m, sd) in rivals.items()
    }
    lines += [""]
    if chances and choice is not None:
        rival = max(chances, key=chances.get)
        lines.append(
            f"- How sure: the unmeasured encoder most likely to beat it is `{rival}` "
            f"(chance {chances[rival]:.2f} under the law's normal posterior); the others are "
            "less likely. "
            + (
                "The law ranks it higher: raise `policy.budget` to finetune it."
                if rivals[rival][0] > best
                else "The law ranks every unmeasured encoder lower."
            )
        )
    lines += [
        f"- Strategy `{last['strategy']}`; {len(last['ordered'])} finetunes ordered (budget "
        f"{budget}); measured: {', '.join(measured) or 'none'}.",
        f"- Stopped: {last['why']}.",
        f"- Least-squares law on the measured encoders (means over benchmarks): {fit_text(last)}.",
        "",
        f"Top {len(last['top_k'])} of the last round (95% intervals{_bounds_text(last)}; "
        "measured scores are exact):",
        "",
        "| rank | encoder | score | 95% interval | status |",
        "|---|---|---|---|---|",
    ]
    top = (last.get("bounds") or [None, None])[1]
    for rank, entry in enumerate(last["top_k"], start=1):
        tag = "measured" if entry["measured"] else "predicted"
        if not entry["measured"] and top is not None and entry["score"] >= top:
            tag += " (clipped: the law extrapolates past the benchmarks' top)"
        lines.append(
            f"| {rank} | {entry['encoder']} | {entry['score']:.3f} | "
            f"[{entry['low']:.3f}, {entry['high']:.3f}] | {tag} |"
        )
    lines += ["", "Rounds: rounds.csv; predictions by round: predicted_vs_measured.png.", ""]
    return "\n".join(lines)


def predicted_vs_measured_figure(decisions: Sequence[Mapping], measured: pd.DataFrame):
    """Left: a ranked interval plot of the last round: every encoder sorted by the law's
    weighted normalised score, its 95% interval (clipped to what the benchmarks' ranges
    allow), measured encoders filled, each pick named with the round that ordered it. Right:
    each round's raw-scale predictions of the encoders measured later against their
    measurements, min-max normalised per benchmark over the measured encoders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(decisions[-1]["ranking"])
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(4.5, 0.32 * n + 1.8)), layout="constrained",
        gridspec_kw={"width_ratios": [1.3, 1]},
    )  # fmt: skip
    _ranked_panel(left, decisions)
    _held_out_panel(right, decisions, measured)
    return fig


def _ranked_panel(ax, decisions: Sequence[Mapping]) -> None:
    """The last round's ranking as horizontal interval bars, best at the top."""
    last = decisions[-1]
    picked = {e: d["round"] for d in decisions for e in d["picks"]}
    order = sorted(last["ranking"], key=lambda e: -last["ranking"][e][0])
    bounds = last.get("bounds") or (-np.inf, np.inf)
    ys = np.arange(len(order))[::-1]
    for y, name in zip(ys, order, strict=True):
        mean, sd = last["ranking"][name]
        done = name in last["finetuned"]
        mean, low, high = np.clip([mean, mean - 1.96 * sd, mean + 1.96 * sd], *bounds)
        colour = "tab:blue" if done else "tab:grey"
        ax.plot([low, high], [y, y], color=colour, lw=2.2, solid_capstyle="butt", alpha=0.6)
        ax.scatter([mean], [y], s=40, zorder=3, color=colour if done else "white",
                   edgecolors=colour, linewidths=1.5)  # fmt: skip
    labels = [f"{e} (round {picked[e]})" if e in picked else e for e in order]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(max(last["ranking"][e][0] for e in last["finetuned"]) if last["finetuned"]
               else 0.0, color="tab:blue", lw=0.8, ls=":")  # fmt: skip
    clip = "" if last.get("bounds") is None else ", clipped to the benchmarks' ranges"
    ax.set_xlabel(f"weighted normalised score, 95% interval{clip}")
    ax.set_title(
        f"Round {last['round']}: filled = measured, open = predicted\n"
        "(round r) = picked in round r; dotted: best measured",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)


def _held_out_panel(ax, decisions: Sequence[Mapping], measured: pd.DataFrame) -> None:
    from matplotlib import colormaps

    scale = measured.groupby("benchmark")["score"].agg(["min", "max"])
    plotted = 0
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(decisions), 1)))
    for d, colour in zip(decisions, colours, strict=True):
        xs, ys = [], []
        for bench, preds in d["raw_predictions"].items():
            if bench not in scale.index:
                continue
            low, high = scale.loc[bench, "min"], scale.loc[bench, "max"]
            span = high - low if high > low else 1.0
            for row in measured[measured["benchmark"] == bench].itertuples():
                if row.encoder not in d["finetuned"] and row.encoder in preds:
                    xs.append((row.score - low) / span)
                    ys.append((preds[row.encoder] - low) / span)
        if xs:
            ax.scatter(xs, ys, label=f"round {d['round']}", alpha=0.8, color=colour)
            plotted += len(xs)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("measured later (normalised per benchmark)")
    ax.set_ylabel("predicted before finetuning")
    ax.set_title("Held-out predictions" if plotted else "No held-out predictions yet")
    if plotted:
        ax.legend(fontsize=8)


def measured_scores(decision: Mapping) -> pd.DataFrame:
    """The measured raw scores a round saw (encoder, benchmark, score)."""
    return pd.DataFrame(
        [
            {"encoder": e, "benchmark": b, "score": v}
            for b, values in decision["measured"].items()
            for e, v in values.items()
        ],
        columns=["encoder", "benchmark", "score"],
    )


def read_scores_file(path: str | Path | None) -> pd.DataFrame:
    """``policy.scores_file``: encoders finetuned elsewhere (encoder, benchmark, score)."""
    if not path:
        return pd.DataFrame(columns=["encoder", "benchmark", "score"])
    table = pd.read_csv(path)
    missing = {"encoder", "benchmark", "score"} - set(table.columns)
    if missing:
        raise ValueError(f"policy.scores_file {path}: missing columns {sorted(missing)}")
    return table[["encoder", "benchmark", "score"]]


def write_policy_outputs(
    round_files: Sequence[str | Path], out: Mapping[str, str | Path], budget: int
) -> None:
    """rounds.csv, recommendation.md and predicted_vs_measured.png from the round JSONs."""
    import matplotlib.pyplot as plt

    from vislaw.io.atomic import atomic_path, write_frame, write_text_atomic
    from vislaw.law.tables import FLOAT_FORMAT

    decisions = [read_round(p) for p in round_files]
    write_frame(out["rounds"], rounds_table(decisions), FLOAT_FORMAT)
    write_text_atomic(out["recommendation"], recommendation_markdown(decisions, budget))
    fig = predicted_vs_measured_figure(decisions, measured_scores(decisions[-1]))
    with atomic_path(out["plot"]) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)

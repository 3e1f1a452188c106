"""``predicted_vs_measured.png``: the last round's ranking and each round's held-out predictions.

The only module of the policy mode that needs matplotlib (imported inside the function, Agg
backend), so that deciding a round never loads a plotting library.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vislaw.law.policy_mode.rounds import RoundDecision


def predicted_vs_measured_figure(decisions: Sequence[RoundDecision], measured: pd.DataFrame):
    """Left: a ranked interval plot of the last round: every encoder sorted by the law's
    weighted normalised score, its 95% interval (clipped to what the benchmarks' ranges
    allow), measured encoders filled, each pick named with the round that ordered it. Right:
    each round's raw-scale predictions of the encoders measured later against their
    measurements, min-max normalised per benchmark over the measured encoders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(decisions[-1].ranking)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, max(4.5, 0.32 * n + 1.8)), layout="constrained",
        gridspec_kw={"width_ratios": [1.3, 1]},
    )  # fmt: skip
    _ranked_panel(left, decisions)
    _held_out_panel(right, decisions, measured)
    return fig


def _ranked_panel(ax, decisions: Sequence[RoundDecision]) -> None:
    """The last round's ranking as horizontal interval bars, best at the top."""
    last = decisions[-1]
    picked = {e: d.round for d in decisions for e in d.picks}
    order = sorted(last.ranking, key=lambda e: -last.ranking[e][0])
    bounds = last.bounds or (-np.inf, np.inf)
    ys = np.arange(len(order))[::-1]
    for y, name in zip(ys, order, strict=True):
        mean, sd = last.ranking[name]
        done = name in last.finetuned
        mean, low, high = np.clip([mean, mean - 1.96 * sd, mean + 1.96 * sd], *bounds)
        colour = "tab:blue" if done else "tab:grey"
        ax.plot([low, high], [y, y], color=colour, lw=2.2, solid_capstyle="butt", alpha=0.6)
        ax.scatter([mean], [y], s=40, zorder=3, color=colour if done else "white",
                   edgecolors=colour, linewidths=1.5)  # fmt: skip
    labels = [f"{e} (round {picked[e]})" if e in picked else e for e in order]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.axvline(max(last.ranking[e][0] for e in last.finetuned) if last.finetuned
               else 0.0, color="tab:blue", lw=0.8, ls=":")  # fmt: skip
    clip = "" if last.bounds is None else ", clipped to the benchmarks' ranges"
    ax.set_xlabel(f"weighted normalised score, 95% interval{clip}")
    ax.set_title(
        f"Round {last.round}: filled = measured, open = predicted\n"
        "(round r) = picked in round r; dotted: best measured",
        fontsize=9,
    )
    ax.grid(axis="x", alpha=0.3)


def _held_out_panel(ax, decisions: Sequence[RoundDecision], measured: pd.DataFrame) -> None:
    from matplotlib import colormaps

    scale = measured.groupby("benchmark")["score"].agg(["min", "max"])
    plotted = 0
    colours = colormaps["viridis"](np.linspace(0, 0.9, max(len(decisions), 1)))
    for d, colour in zip(decisions, colours, strict=True):
        xs, ys = [], []
        for bench, preds in d.raw_predictions.items():
            if bench not in scale.index:
                continue
            low, high = scale.loc[bench, "min"], scale.loc[bench, "max"]
            span = high - low if high > low else 1.0
            for row in measured[measured["benchmark"] == bench].itertuples():
                if row.encoder not in d.finetuned and row.encoder in preds:
                    xs.append((row.score - low) / span)
                    ys.append((preds[row.encoder] - low) / span)
        if xs:
            ax.scatter(xs, ys, label=f"round {d.round}", alpha=0.8, color=colour)
            plotted += len(xs)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--")
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("measured later (normalised per benchmark)")
    ax.set_ylabel("predicted before finetuning")
    ax.set_title("Held-out predictions" if plotted else "No held-out predictions yet")
    if plotted:
        ax.legend(fontsize=8)

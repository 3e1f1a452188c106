"""``recommendation.md``: the policy's final choice and how sure the law is of it, in words.

Text only (no plotting), so that ``python -m vislaw.law`` and tests read it without matplotlib.
"""

from __future__ import annotations

from collections.abc import Sequence

from vislaw.law.policy_mode.rounds import RoundDecision, fit_text, policy_choice


def _bounds_text(decision: RoundDecision) -> str:
    bounds = decision.bounds
    if not bounds:
        return ""
    return (
        f", clipped to [{bounds[0]:.3f}, {bounds[1]:.3f}], what the benchmarks' ranges allow "
        "(0 = the worst, 1 = the best measured encoder)"
    )


def recommendation_markdown(decisions: Sequence[RoundDecision], budget: int) -> str:
    """``recommendation.md``: the final choice (the best *measured* encoder: a prediction is
    no result) and how sure the law is that no unmeasured encoder beats it."""
    from scipy.special import ndtr

    last = decisions[-1]
    ranking = last.ranking
    measured = list(last.finetuned)
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
        f"- Strategy `{last.strategy}`; {len(last.ordered)} finetunes ordered (budget "
        f"{budget}); measured: {', '.join(measured) or 'none'}.",
        f"- Stopped: {last.why}.",
        f"- Least-squares law on the measured encoders (means over benchmarks): {fit_text(last)}.",
        "",
        f"Top {len(last.top_k)} of the last round (95% intervals{_bounds_text(last)}; "
        "measured scores are exact):",
        "",
        "| rank | encoder | score | 95% interval | status |",
        "|---|---|---|---|---|",
    ]
    top = (last.bounds or (None, None))[1]
    for rank, entry in enumerate(last.top_k, start=1):
        tag = "measured" if entry.measured else "predicted"
        if not entry.measured and top is not None and entry.score >= top:
            tag += " (clipped: the law extrapolates past the benchmarks' top)"
        lines.append(
            f"| {rank} | {entry.encoder} | {entry.score:.3f} | "
            f"[{entry.low:.3f}, {entry.high:.3f}] | {tag} |"
        )
    lines += ["", "Rounds: rounds.csv; predictions by round: predicted_vs_measured.png.", ""]
    return "\n".join(lines)

"""The report rule's three files (rounds.csv, recommendation.md, predicted_vs_measured.png),
written atomically from the round JSONs: the one call rule ``policy_report`` makes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vislaw.law.policy_mode.figure import predicted_vs_measured_figure
from vislaw.law.policy_mode.markdown import recommendation_markdown
from vislaw.law.policy_mode.rounds import measured_scores, read_round, rounds_table


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

"""A policy round's record (:class:`RoundDecision`), its JSON file and the rounds.csv table.

A round is the one fact that crosses from one checkpoint to the next (rules/policy_common.smk
reads the previous round's ``ordered`` and ``picks``) and into the reports, so it is one typed
record with one JSON form (:meth:`RoundDecision.to_json` / :meth:`RoundDecision.from_json`)
rather than a dict read by key in several places.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TopEntry:
    """One of a round's top-k encoders: its weighted normalised score and 95% interval (clipped
    to what the benchmarks' ranges allow), measured or predicted."""

    encoder: str
    score: float
    low: float
    high: float
    measured: bool


@dataclass(frozen=True)
class RoundDecision:
    """One round of the policy mode (``policy/rounds/<r>.json``): what it saw, how it ranked
    the encoders and what it ordered next (``picks``) or why it stopped."""

    round: int
    strategy: str
    finetuned: list[str]  # measured encoders (policy picks plus policy.scores_file)
    ordered: list[str]  # finetunes the earlier rounds ordered
    picks: list[str]  # finetunes this round orders (empty when it stops)
    stop: bool
    why: str
    law_r2: float | None  # None: not determined (JSON has no NaN)
    law_loo_r2: float | None
    bounds: tuple[float, float] | None  # range of the weighted score; None: unknown
    n_measured: int
    top_k: list[TopEntry]
    ranking: dict[str, tuple[float, float]]  # encoder -> (mean, sd) of the weighted score
    raw_predictions: dict[str, dict[str, float]]  # benchmark -> encoder -> raw-scale mean
    measured: dict[str, dict[str, float]]  # benchmark -> encoder -> measured score

    @property
    def next_ordered(self) -> list[str]:
        """Every finetune ordered up to and including this round (the next round's ``ordered``)."""
        return [*self.ordered, *self.picks]

    def to_json(self) -> dict:
        """The round as the JSON object its file holds."""
        out = dict(self.__dict__)
        out["top_k"] = [dict(entry.__dict__) for entry in self.top_k]
        out["bounds"] = list(self.bounds) if self.bounds is not None else None
        out["ranking"] = {e: list(v) for e, v in self.ranking.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping, source: str = "round") -> RoundDecision:
        """A round from its JSON object; ``law_loo_r2`` and ``bounds`` may be absent (rounds
        written before they existed). ``source`` names the file in the error."""
        missing = sorted(set(_REQUIRED) - set(data))
        if missing:
            raise ValueError(f"{source}: policy round lacks keys {missing}")
        bounds = data.get("bounds")
        return cls(
            round=int(data["round"]),
            strategy=str(data["strategy"]),
            finetuned=list(data["finetuned"]),
            ordered=list(data["ordered"]),
            picks=list(data["picks"]),
            stop=bool(data["stop"]),
            why=str(data["why"]),
            law_r2=data["law_r2"],
            law_loo_r2=data.get("law_loo_r2"),
            bounds=(float(bounds[0]), float(bounds[1])) if bounds else None,
            n_measured=int(data["n_measured"]),
            top_k=[TopEntry(**entry) for entry in data["top_k"]],
            ranking={e: (float(m), float(sd)) for e, (m, sd) in data["ranking"].items()},
            raw_predictions={b: dict(v) for b, v in data.get("raw_predictions", {}).items()},
            measured={b: dict(v) for b, v in data.get("measured", {}).items()},
        )


_REQUIRED = ("round", "strategy", "finetuned", "ordered", "picks", "stop", "why", "law_r2",
             "n_measured", "top_k", "ranking")  # fmt: skip


def write_round(path: str | Path, decision: RoundDecision) -> None:
    """Write a round's JSON atomically (keys sorted: a re-decided identical round is the same
    file)."""
    from vislaw.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(decision.to_json(), indent=1, sort_keys=True))


def read_round(path: str | Path) -> RoundDecision:
    """A round's JSON file as its record (errors name the file)."""
    return RoundDecision.from_json(json.loads(Path(path).read_text()), str(path))


def _interval_text(entry: TopEntry) -> str:
    tag = "measured" if entry.measured else "predicted"
    return f"{entry.encoder} {entry.score:.3f} [{entry.low:.3f}, {entry.high:.3f}] {tag}"


def rounds_table(decisions: Sequence[RoundDecision]) -> pd.DataFrame:
    """``rounds.csv``: one row per round."""
    return pd.DataFrame(
        [
            {
                "round": d.round,
                "picked": " ".join(d.picks),
                "why": d.why,
                "n_measured": d.n_measured,
                "finetuned": " ".join(d.finetuned),
                "law_r2": np.nan if d.law_r2 is None else d.law_r2,
                "law_loo_r2": np.nan if d.law_loo_r2 is None else d.law_loo_r2,
                "top_k": "; ".join(_interval_text(t) for t in d.top_k),
                "stop": d.stop,
            }
            for d in decisions
        ]
    )


def fit_text(decision: RoundDecision) -> str:
    """The fit statement of a round (vislaw.law.fit.fit_statement): n, in-sample and
    leave-one-out R², or that the fit is under-determined and no R² is evidence."""
    from vislaw.law.fit import fit_statement

    nan = float("nan")
    r2, loo = decision.law_r2, decision.law_loo_r2
    return fit_statement(
        decision.n_measured, nan if r2 is None else r2, nan if loo is None else loo
    )


def policy_choice(decision: RoundDecision) -> str | None:
    """The policy's choice in a round: the best *measured* encoder by its ranking (a prediction
    is no result); None when nothing was measured."""
    measured = decision.finetuned
    return max(measured, key=lambda e: decision.ranking[e][0]) if measured else None


def measured_scores(decision: RoundDecision) -> pd.DataFrame:
    """The measured raw scores a round saw (encoder, benchmark, score)."""
    return pd.DataFrame(
        [
            {"encoder": e, "benchmark": b, "score": v}
            for b, values in decision.measured.items()
            for e, v in values.items()
        ],
        columns=["encoder", "benchmark", "score"],
    )

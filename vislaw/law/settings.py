"""The ``law:`` and ``policy:`` config sections as typed settings (vislaw.sections).

The schema holds every default; these models are typed views of a checked config. The seed is
the config's top-level ``seed``, passed in explicitly (a derived field). Light on purpose: the
workflow scripts and the drift test import it without the law's numerical stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

from vislaw.sections import Section

if TYPE_CHECKING:
    from vislaw.law.strategies import BayesParams


@dataclass(frozen=True)
class LawSettings(Section):
    """Config key ``law`` (rule ``law``; the schema describes each key), plus the run's seed
    and ``source``, the name of the scores table that summary.md reports."""

    SECTION: ClassVar[str] = "law"
    DERIVED: ClassVar[frozenset[str]] = frozenset({"seed", "source"})

    scores_table: str | None
    table_format: str
    trials: int
    k: int
    budgets: tuple[int, ...]
    bootstrap: int
    random_draws: int
    confidence: float
    a_definition: str
    strategies: bool
    figure_units: str
    seed: int
    source: str = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "", **derived: Any) -> Self:
        """From a checked config: the ``law`` section and the top-level ``seed``."""
        return super().from_config(config, seed=config["seed"], source=source, **derived)

    @property
    def input_format(self) -> str:
        """The format of the table the rule fits: ``table_format`` for ``scores_table``, tidy
        for this run's own law_input.csv."""
        return self.table_format if self.scores_table else "tidy"


@dataclass(frozen=True)
class PolicySettings(Section):
    """Config key ``policy`` (the policy mode, docs/policy.md), plus the run's seed."""

    SECTION: ClassVar[str] = "policy"
    DERIVED: ClassVar[frozenset[str]] = frozenset({"seed"})

    strategy: str
    budget: int
    per_round: int
    min_finetunes: int
    stop_z: float
    k: int
    weights: Mapping[str, float]
    scores_file: str | None
    prior_table: str
    prior_format: str
    noise: float
    beta: float
    ridge: float
    shrink: float
    seed: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **derived: Any) -> Self:
        """From a checked config: the ``policy`` section and the top-level ``seed``."""
        return super().from_config(config, seed=config["seed"], **derived)

    @property
    def params(self) -> BayesParams:
        """The Bayesian strategies' hyper-parameters (vislaw.law.strategies)."""
        from vislaw.law.strategies import BayesParams

        return BayesParams(noise=self.noise, beta=self.beta, ridge=self.ridge, shrink=self.shrink)

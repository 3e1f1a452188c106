"""The law's and the policy mode's pipeline steps, one ``run_<step>`` each.

Each takes settings objects (vislaw.law.settings) and paths; the workflow scripts
(workflow_scripts/law*.py, policy_*.py) and the CLI (``python -m vislaw.law fit``) only gather
those and call these. Light on purpose: the numerical stack is imported by the step that runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from vislaw.law.settings import LawSettings, PolicySettings

if TYPE_CHECKING:
    import pandas as pd

    from vislaw.eval.tasks import Benchmark
    from vislaw.law.policy_mode.rounds import RoundDecision


def _measured_benchmarks(scores: str | Path, wanted: Sequence[str]) -> list[str]:
    """The wanted benchmarks this run scored: law_input left out those that no encoder scored
    (NaN with a reason in benchmarks.csv, e.g. a GPT judge without a key); fit the others."""
    from vislaw.law.tables import read_tidy_table

    present = set(read_tidy_table(scores)["benchmark"])
    for name in (b for b in wanted if b not in present):
        print(f"benchmark {name}: not scored for any encoder (see benchmarks.csv); left out")
    return [b for b in wanted if b in present] or list(wanted)


def run_law(
    settings: LawSettings,
    scores: str | Path,
    table_format: str,
    out_dir: str | Path,
    *,
    benchmarks: Sequence[str] = (),
    encoders: Iterable[str] | None = None,
    measured: bool = False,
) -> dict[str, Path]:
    """Rule ``law``: fit the AC law on ``scores`` and write every file of ``out_dir``
    (vislaw.layout.LAW_FILES); returns their paths.

    ``benchmarks``: only these (empty: all of the table). ``encoders``: the config's encoders,
    to which the table is restricted. ``measured``: the table is this run's own law_input.csv,
    where a benchmark no encoder scored is missing (left out with a note, not an error).
    """
    from vislaw.law.report import write_law_outputs
    from vislaw.law.tables import read_scores_table, restrict_to_config

    wanted = list(benchmarks) or None
    if wanted and measured:
        wanted = _measured_benchmarks(scores, wanted)
    table = read_scores_table(scores, table_format, wanted)
    if encoders is not None:
        table = restrict_to_config(table, encoders, source=scores)
    settings = replace(settings, source=f"{scores} ({table_format})")
    paths = write_law_outputs(table, out_dir, settings, table_format)
    if wanted:
        from vislaw.law.plot import write_missing_figures

        missing = [b for b in benchmarks if b not in set(table["benchmark"])]
        paths.update(write_missing_figures(missing, out_dir))
    return paths


def run_law_input(
    settings: LawSettings,
    a_scores: str | Path,
    c_scores: str | Path,
    benchmarks: str | Path,
    output: str | Path,
) -> pd.DataFrame:
    """Rule ``law_input``: this run's A, C and benchmark scores joined into the law's tidy
    table (A as ``law.a_definition`` says), written to ``output``."""
    from vislaw.io.atomic import write_frame
    from vislaw.law.inputs import build_law_input

    table = build_law_input(a_scores, c_scores, benchmarks, settings.a_definition)
    write_frame(output, table)
    return table


@dataclass(frozen=True)
class PolicyRoundInputs:
    """What checkpoint ``policy_round`` reads for round ``round_index``: the run's encoders and
    benchmarks, the A column (``law.a_definition``), the A/C tables, ``results`` (encoder,
    benchmark, lmms-eval results JSON) of the encoders finetuned so far, ``previous`` (the last
    round's JSON; None in round 0), and where the round's JSON goes (``output``). One record,
    so that the workflow script names each input rather than passing ten in order."""

    a_definition: str
    encoders: Sequence[str]
    benchmarks: Sequence[Benchmark]
    round_index: int
    a_scores: str | Path
    c_scores: str | Path
    results: Sequence[tuple[str, str, str | Path]]
    previous: str | Path | None
    output: str | Path


def run_policy_round(settings: PolicySettings, inputs: PolicyRoundInputs) -> RoundDecision:
    """Checkpoint ``policy_round``: round ``inputs.round_index``'s picks (or stop), written to
    ``inputs.output`` as JSON."""
    import pandas as pd

    from vislaw.eval.results import collect_rows
    from vislaw.law.inputs import A_COLUMNS
    from vislaw.law.policy_mode.decide import decide_round
    from vislaw.law.policy_mode.rounds import read_round, write_round
    from vislaw.law.policy_mode.state import build_state, prior_coefficients, read_scores_file
    from vislaw.law.strategies import PRIOR_STRATEGIES
    from vislaw.law.tables import read_scores_table

    by_name = {b.name: b for b in inputs.benchmarks}
    ordered: list[str] = []
    if inputs.previous is not None:
        ordered = read_round(inputs.previous).next_ordered
    rows = collect_rows([(e, by_name[b], path) for e, b, path in inputs.results])
    measured = pd.DataFrame(
        [
            (r.encoder, r.benchmark, r.score)
            for r in rows
            if r.metric == by_name[r.benchmark].metric
        ],
        columns=["encoder", "benchmark", "score"],
    )
    state = build_state(
        pd.read_csv(inputs.a_scores),
        pd.read_csv(inputs.c_scores),
        pd.concat([read_scores_file(settings.scores_file), measured], ignore_index=True),
        list(inputs.encoders),
        list(by_name),
        A_COLUMNS[inputs.a_definition],
    )
    prior = None
    if settings.strategy in PRIOR_STRATEGIES:
        table = read_scores_table(settings.prior_table, settings.prior_format)
        prior = prior_coefficients(table)
    scales = {b.name: b.scale for b in inputs.benchmarks}
    decision = decide_round(inputs.round_index, state, ordered, settings, prior, scales)
    write_round(inputs.output, decision)
    return decision


def run_policy_report(
    settings: PolicySettings,
    round_files: Sequence[str | Path],
    outputs: Mapping[str, str | Path],
) -> None:
    """Rule ``policy_report``: ``outputs`` ``rounds`` (rounds.csv), ``recommendation``
    (recommendation.md) and ``plot`` (predicted_vs_measured.png) from the round JSONs."""
    from vislaw.law.policy_mode.outputs import write_policy_outputs

    write_policy_outputs(round_files, outputs, settings.budget)

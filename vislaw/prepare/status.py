"""What a config's real inputs are, which are missing, and the message that says so.

The rules declare the markers of their real inputs (vislaw.prepare.unpack.marker_path for data
sources, vislaw.prepare.hub.marker_path for Hub repos) as inputs; when one is missing (or, for
a data source, its marker does not verify against the config: vislaw.prepare.sources.
check_prepared, so a planted or stale marker counts as missing) the
Snakefile prints :func:`missing_message` and exits before any job is planned, because compute
nodes usually cannot download and the first sign would otherwise be a FileNotFoundError in a
queued GPU job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vislaw.prepare import hub
from vislaw.prepare.hub import hf_home
from vislaw.prepare.sources import Source, check_prepared, sources, sources_for


@dataclass(frozen=True)
class Requirement:
    marker: Path
    what: str  # one line for the message
    check: Callable[[], str | None] | None = None  # why the marker is not trusted, or None

    def problem(self) -> str | None:
        """Why this input does not count as prepared (None when it does)."""
        if self.check is not None:
            return self.check()
        return None if self.marker.exists() else "not prepared"


def _source_requirement(source: Source) -> Requirement:
    return Requirement(
        source.marker,
        f"data source '{source.name}' (data.{source.dataset}) -> {source.dest}",
        lambda: check_prepared(source),
    )


def data_requirements(config: Mapping[str, Any], dataset: str) -> list[Requirement]:
    """Markers of the sources a dataset needs (none when data.sources lists none for it)."""
    return [_source_requirement(s) for s in sources_for(config, dataset)]


def model_requirements(
    config: Mapping[str, Any],
    specs: Mapping[str, Any],
    *,
    encoder: str | None = None,
    llm: bool = False,
    benchmarks: bool = False,
) -> list[Requirement]:
    """Markers of the Hub repos an encoder / the LLM / the benchmarks load; none without
    ``cache.hf_home`` (then the user's own Hub cache is used, as before)."""
    home = hf_home(config)
    if home is None:
        return []
    repos = hub.hub_repos(config, specs)
    keep = set()
    if encoder is not None:
        keep |= {
            f"{r.repo_type}:{r.repo_id}" for r in hub.repos_for_encoder(config, specs, encoder)
        }
    for key, repo in repos.items():
        if (llm and repo.why == "llm.model_id") or (benchmarks and repo.repo_type == "dataset"):
            keep.add(key)
    return [
        Requirement(hub.marker_path(home, r), f"{r.repo_type} {r.repo_id} ({r.why}) in {home}")
        for key, r in repos.items()
        if key in keep
    ]


def all_requirements(config: Mapping[str, Any], specs: Mapping[str, Any]) -> list[Requirement]:
    """Every data source and Hub repo of the config."""
    reqs = [_source_requirement(s) for s in sources(config).values()]
    home = hf_home(config)
    if home is not None:
        reqs += [
            Requirement(hub.marker_path(home, r), f"{r.repo_type} {r.repo_id} ({r.why}) in {home}")
            for r in hub.hub_repos(config, specs).values()
        ]
    return reqs


def unverified(config: Mapping[str, Any]) -> list[str]:
    """The prepared data sources whose download could not be checked (no length from the
    server, no pinned sha256): prepare accepted them with a warning and their marker says so."""
    import json

    return [
        source.name
        for source in sources(config).values()
        if not source.manual
        and check_prepared(source) is None
        and json.loads(source.marker.read_text()).get("verified") is False
    ]


def missing(reqs: Sequence[Requirement]) -> list[Requirement]:
    return [r for r in reqs if r.problem() is not None]


def missing_message(missing_reqs: Sequence[Requirement], configfiles: Sequence[str]) -> str:
    """The refusal: what is missing, and the command that prepares it."""
    config_args = " ".join(f"--configfile {c}" for c in configfiles) or "--configfile config.yaml"
    lines = [f"vislaw: {len(missing_reqs)} real input(s) of this config are not prepared:"]
    for req in missing_reqs:
        why = req.problem()
        lines.append(f"  - {req.what}" + (f" ({why})" if why and why != "not prepared" else ""))
    lines += [
        "Nothing was run. Prepare them first, on a machine with internet (a login node):",
        f"  snakemake prepare {config_args}",
        "(docs/data.md lists the sources, their sizes and what each needs.)",
    ]
    return "\n".join(lines)

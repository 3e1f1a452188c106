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
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Item:
    """One thing ``prepare`` fetches, as ``prepare list`` prints it.

    ``kind``: ``url``, ``hub-file`` or ``manual`` (a data source), ``model`` or ``dataset`` (a
    Hub repo); ``source``: the URL or repo id (a Hub file: ``<repo>/<file>``)."""

    kind: str
    source: str
    revision: str | None
    dest: Path
    marker: Path
    what: str
    config_name: str | None = None
    splits: tuple[str, ...] = ()
    group: str = ""  # what reads it: a dataset (pretrain ... lmvr), encoders, llm or benchmarks
    # Why the marker is not trusted, or None (data sources: sources.check_prepared).
    check: Callable[[], str | None] | None = field(default=None, compare=False)

    @property
    def prepared(self) -> bool:
        return self.requirement().problem() is None

    def requirement(self) -> Requirement:
        return Requirement(self.marker, self.what, self.check)

    def as_dict(self) -> dict[str, Any]:
        """The JSON row of ``prepare list --json``."""
        row = {
            "kind": self.kind,
            "source": self.source,
            "revision": self.revision,
            "dest": str(self.dest),
            "prepared": self.prepared,
        }
        if self.kind == "dataset":
            row |= {"config_name": self.config_name, "splits": list(self.splits)}
        return row


def _source_item(s: Any) -> Item:
    what = f"data source '{s.name}' (data.{s.dataset}) -> {s.dest}"
    if s.hub:
        kind, source = "hub-file", f"{s.hub['repo']}/{s.hub['file']}"
        revision = s.hub.get("revision")
    else:
        kind, source, revision = ("manual", "manual", None) if s.manual else ("url", s.url, None)
    return Item(
        kind, source, revision, s.dest, s.marker, what, group=s.dataset,
        check=lambda: check_prepared(s),
    )  # fmt: skip


def items(config: Mapping[str, Any], specs: Mapping[str, Any]) -> list[Item]:
    """Every data source and Hub repo of the config (Hub repos only with ``cache.hf_home``:
    without it jobs read the user's own Hub cache, which prepare does not manage)."""
    out = [_source_item(s) for s in sources(config).values()]
    home = hf_home(config)
    if home is not None:
        for r in hub.hub_repos(config, specs).values():
            folder = f"{r.repo_type}s--{r.repo_id.replace('/', '--')}"
            out.append(
                Item(
                    r.repo_type,
                    r.repo_id,
                    r.revision,
                    home / "hub" / folder,
                    hub.marker_path(home, r),
                    f"{r.repo_type} {r.repo_id} ({r.why}) in {home}",
                    r.config_name,
                    r.splits,
                    _repo_group(r),
                )
            )
    return out


def _repo_group(repo: hub.HubRepo) -> str:
    if repo.repo_type == "dataset":
        return "benchmarks"
    return "llm" if repo.why == "llm.model_id" else "encoders"


# What each GPU rule's jobs read (their `prepared(...)` inputs in rules/*.smk): the data
# sources of these datasets, and the encoders' / LLM's / benchmarks' Hub repos.
RULE_READS = {
    "features": {"spair", "encoders"},
    "stage1": {"pretrain", "encoders", "llm"},
    "stage2": {"instruct", "encoders", "llm"},
    "embeddings": {"encoders", "llm", "benchmarks"},  # a_images samples the benchmarks
    "evaluate": {"encoders", "benchmarks"},
    "lmvr": {"lmvr", "encoders"},
}


def for_targets(
    config: Mapping[str, Any], rows: Sequence[Item], targets: Sequence[str]
) -> list[Item]:
    """The rows the jobs of ``targets`` read (the rules they plan: vislaw.cost's table, the
    policy's finetunes and ConvLLaVA's stage 1 for its features included)."""
    from vislaw.cost import _planned_rules

    groups = set().union(*[RULE_READS[r] for r in _planned_rules(config, targets)])
    return [row for row in rows if row.group in groups]


def all_requirements(config: Mapping[str, Any], specs: Mapping[str, Any]) -> list[Requirement]:
    """Every data source and Hub repo of the config (the rows of :func:`items`)."""
    return [i.requirement() for i in items(config, specs)]


def items_table(rows: Sequence[Item]) -> str:
    """``prepare list``'s text: one line per item, prepared or not."""
    lines = []
    for i in rows:
        extra = f" [{i.config_name or '-'}: {','.join(i.splits)}]" if i.kind == "dataset" else ""
        lines.append(
            f"{'yes' if i.prepared else 'no ':3}  {i.kind:8} {i.source}{extra}"
            f"  @{i.revision or 'main'} -> {i.dest}"
        )
    return "\n".join(["ok?  kind     source  @revision -> destination", *lines])


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

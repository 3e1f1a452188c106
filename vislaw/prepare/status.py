"""What a config's real inputs are, which are missing, and the message that says so.

The rules declare the markers of their real inputs (vislaw.prepare.unpack.marker_path for data
sources, vislaw.prepare.hub.marker_path for Hub repos) as inputs; when one is missing the
Snakefile prints :func:`missing_message` and exits before any job is planned, because compute
nodes usually cannot download and the first sign would otherwise be a FileNotFoundError in a
queued GPU job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vislaw.prepare import hub
from vislaw.prepare.hub import hf_home
from vislaw.prepare.sources import sources, sources_for


@dataclass(frozen=True)
class Requirement:
    marker: Path
    what: str  # one line for the message


def data_requirements(config: Mapping[str, Any], dataset: str) -> list[Requirement]:
    """Markers of the sources a dataset needs (none when data.sources lists none for it)."""
    return [
        Requirement(s.marker, f"data source '{s.name}' (data.{dataset}) -> {s.dest}")
        for s in sources_for(config, dataset)
    ]


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

    @property
    def prepared(self) -> bool:
        return self.marker.exists()

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
    return Item(kind, source, revision, s.dest, s.marker, what, group=s.dataset)


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
    return [Requirement(i.marker, i.what) for i in items(config, specs)]


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


def missing(reqs: Sequence[Requirement]) -> list[Requirement]:
    return [r for r in reqs if not r.marker.exists()]


def missing_message(missing_reqs: Sequence[Requirement], configfiles: Sequence[str]) -> str:
    """The refusal: what is missing, and the command that prepares it."""
    config_args = " ".join(f"--configfile {c}" for c in configfiles) or "--configfile config.yaml"
    lines = [f"vislaw: {len(missing_reqs)} real input(s) of this config are not prepared:"]
    lines += [f"  - {r.what}" for r in missing_reqs]
    lines += [
        "Nothing was run. Prepare them first, on a machine with internet (a login node):",
        f"  snakemake prepare {config_args}",
        "(docs/data.md lists the sources, their sizes and what each needs.)",
    ]
    return "\n".join(lines)

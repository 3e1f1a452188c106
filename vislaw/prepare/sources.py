"""Dataset sources as config entries (``data.sources.<name>``) and their preparation.

An entry says where the publisher's file is (``url``, or ``hub`` for a file in a Hub repo),
its ``sha256`` where the file is stable, how it unpacks (``zip``, ``tar`` or ``file``), the folder
under ``data.root`` it unpacks into (``dest``) and which dataset of the config it feeds
(``for``: pretrain, instruct or spair). A source the project cannot fetch (OCR-VQA's images are
scraped from the URLs in its ``dataset.json``) has ``manual`` instructions instead.

A prepared source leaves the marker ``<dest>/.vislaw-source-<name>.json`` (vislaw.prepare.unpack);
rules that read a dataset take the markers of its sources as inputs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislaw.layout import data_root as layout_data_root
from vislaw.prepare.download import download, sha256_file
from vislaw.prepare.unpack import marker_path, unpack

DATASETS = ("pretrain", "instruct", "spair")


class PrepareError(RuntimeError):
    """A source or model that cannot be prepared; the message says what to do."""


@dataclass(frozen=True)
class Source:
    name: str
    dest: Path  # absolute or relative to the working directory (data.root joined)
    unpack: str
    dataset: str
    url: str | None = None
    hub: Mapping[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    manual: str | None = None
    size_gb: float | None = None

    @property
    def marker(self) -> Path:
        return marker_path(self.dest, self.name)

    @property
    def filename(self) -> str:
        if self.hub:
            return Path(self.hub["file"]).name
        return Path(str(self.url).split("?", 1)[0]).name or f"{self.name}.download"


data_root = layout_data_root  # data.root, resolved in one place (vislaw.layout)


def hf_home(config: Mapping[str, Any]) -> Path | None:
    """``cache.hf_home`` (the Hub cache every job reads offline), or None when not set."""
    value = (config.get("cache") or {}).get("hf_home")
    return Path(value) if value else None


def sources(config: Mapping[str, Any]) -> dict[str, Source]:
    """Every ``data.sources`` entry as a :class:`Source` (schema-checked config)."""
    root = data_root(config)
    out = {}
    for name, entry in (config["data"].get("sources") or {}).items():
        dest = Path(entry.get("dest", "."))
        out[name] = Source(
            name=name,
            dest=dest if dest.is_absolute() else root / dest,
            unpack=entry.get("unpack", "file"),
            dataset=entry["for"],
            url=entry.get("url"),
            hub=dict(entry.get("hub") or {}),
            sha256=entry.get("sha256"),
            manual=entry.get("manual"),
            size_gb=entry.get("size_gb"),
        )
    return out


def sources_for(config: Mapping[str, Any], dataset: str) -> list[Source]:
    """The sources a dataset of the config needs (none when the config lists no sources)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {DATASETS}")
    return [s for s in sources(config).values() if s.dataset == dataset]


def _fetch_hub_file(source: Source, cache: Path | None) -> Path:
    """The source's file from the Hub cache (downloaded there, resumable, if not yet)."""
    from huggingface_hub import hf_hub_download

    from vislaw.prepare.hub import hub_error_message

    hub = source.hub
    try:
        return Path(
            hf_hub_download(
                hub["repo"],
                hub["file"],
                repo_type=hub.get("type", "dataset"),
                revision=hub.get("revision"),
                cache_dir=str(cache / "hub") if cache else None,
            )
        )
    except Exception as err:  # noqa: BLE001 - turned into one message naming the repo
        message = hub_error_message(err, hub["repo"], hub.get("type", "dataset"))
        if message is None:
            raise
        raise PrepareError(f"data.sources.{source.name}: {message}") from err


def prepare_source(
    config: Mapping[str, Any], name: str, *, progress: bool = True, retries: int = 3
) -> Path:
    """Download, verify and unpack one source; returns its marker. A prepared source (marker
    present) is left alone. Raises PrepareError / DownloadError / UnpackError naming it."""
    try:
        source = sources(config)[name]
    except KeyError:
        raise PrepareError(f"data.sources has no entry '{name}'") from None
    if source.marker.exists():
        return source.marker
    if source.manual:
        raise PrepareError(
            f"data.sources.{name}: cannot be downloaded automatically. {source.manual.strip()} "
            f"When the files are in {source.dest}, run: python -m vislaw.prepare mark "
            f"--config <config> --source {name}"
        )
    if source.hub:
        archive = _fetch_hub_file(source, hf_home(config))
        keep = True  # the Hub cache owns it
    else:
        downloads = data_root(config) / ".downloads" / name
        archive = download(
            str(source.url),
            downloads / source.filename,
            sha256=source.sha256,
            progress=progress,
            retries=retries,
        )
        keep = False
    digest = source.sha256 or sha256_file(archive)
    if source.hub and source.sha256 and sha256_file(archive) != source.sha256.lower():
        raise PrepareError(
            f"data.sources.{name}: sha256 mismatch for {archive}: expected {source.sha256}, "
            f"got {sha256_file(archive)}"
        )
    info = {"url": source.url or f"hub:{source.hub.get('repo')}/{source.hub.get('file')}"}
    marker = unpack(archive, source.dest, name, kind=source.unpack, info={**info, "sha256": digest})
    if not keep:
        os.remove(archive)
    return marker


def mark_manual_source(config: Mapping[str, Any], name: str) -> Path:
    """Write the marker of a ``manual`` source once the user has put its files in place."""
    import json

    from vislaw.io.atomic import write_text_atomic

    source = sources(config)[name]
    if not source.dest.is_dir() or not any(source.dest.iterdir()):
        raise PrepareError(f"data.sources.{name}: {source.dest} is empty or missing")
    files = sum(1 for p in source.dest.rglob("*") if p.is_file())
    write_text_atomic(source.marker, json.dumps({"source": name, "manual": True, "files": files}))
    return source.marker

"""Dataset sources as config entries (``data.sources.<name>``) and their preparation.

An entry says where the publisher's file is (``url``, or ``hub`` for a file in a Hub repo),
its ``sha256`` where the file is stable, how it unpacks (``zip``, ``tar`` or ``file``), the folder
under ``data.root`` it unpacks into (``dest``) and which dataset of the config it feeds
(``for``: pretrain, instruct or spair). A source the project cannot fetch (OCR-VQA's images are
scraped from the URLs in its ``dataset.json``) has ``manual`` instructions instead.

A prepared source leaves the marker ``<data.root>/.vislaw-state/sources/<name>.json``
(vislaw.prepare.unpack, vislaw.prepare.state: out of every archive's reach); rules that read a
dataset take the markers of its sources as inputs, and a marker is trusted only once
:func:`check_prepared` has matched it against the config (source, URL, hash, entries).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vislaw.data.settings import DataSettings
from vislaw.prepare.download import Stall, download, record_path, sha256_file
from vislaw.prepare.hub import PrepareError, hf_home, hub_error_message
from vislaw.prepare.state import source_lock, state_dir
from vislaw.prepare.unpack import CorruptArchive, Limits, marker_path, unpack, verify_marker

DATASETS = ("pretrain", "instruct", "spair", "lmvr")  # lmvr: lmvr.image_folder


@dataclass(frozen=True)
class Source:
    name: str
    dest: Path  # absolute or relative to the working directory (data.root joined)
    state: Path  # prepare's state folder (<data.root>/.vislaw-state)
    unpack: str
    dataset: str
    url: str | None = None
    hub: Mapping[str, Any] = field(default_factory=dict)
    sha256: str | None = None
    manual: str | None = None
    size_gb: float | None = None

    @property
    def marker(self) -> Path:
        return marker_path(self.state, self.name)

    @property
    def origin(self) -> str:
        """What the marker records as the source's URL (a Hub file as ``hub:<repo>/<file>``)."""
        if self.hub:
            return f"hub:{self.hub.get('repo')}/{self.hub.get('file')}"
        return str(self.url)

    @property
    def filename(self) -> str:
        if self.hub:
            return Path(self.hub["file"]).name
        return Path(str(self.url).split("?", 1)[0]).name or f"{self.name}.download"


def data_root(config: Mapping[str, Any]) -> Path:
    return Path(DataSettings.from_config(config).root)


def sources(config: Mapping[str, Any]) -> dict[str, Source]:
    """Every ``data.sources`` entry as a :class:`Source` (schema-checked config: ``dest``,
    ``unpack``, ``sha256`` and the hub ``type``/``revision`` have their defaults filled; ``url``,
    ``hub``, ``manual`` and ``size_gb`` are optional, one of the first three present)."""
    data = DataSettings.from_config(config)
    root = Path(data.root)
    out = {}
    for name, entry in data.sources.items():
        dest = Path(entry["dest"])
        out[name] = Source(
            name=name,
            dest=dest if dest.is_absolute() else root / dest,
            state=state_dir(root),
            unpack=entry["unpack"],
            dataset=entry["for"],
            url=entry.get("url"),
            hub=dict(entry.get("hub") or {}),
            sha256=entry["sha256"],
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

    hub = source.hub
    try:
        return Path(
            hf_hub_download(
                hub["repo"],
                hub["file"],
                repo_type=hub["type"],
                revision=hub["revision"],
                cache_dir=str(cache / "hub") if cache else None,
            )
        )
    except Exception as err:  # noqa: BLE001 - turned into one message naming the repo
        message = hub_error_message(err, hub["repo"], hub["type"])
        if message is None:
            raise
        raise PrepareError(f"data.sources.{source.name}: {message}") from err


def check_prepared(source: Source) -> str | None:
    """Why ``source`` does not count as prepared, or None when its marker is prepare's own for
    this config: same source, dest and URL, the pinned sha256 when there is one, and every entry
    it lists in place (vislaw.prepare.unpack.verify_marker)."""
    expect = None if source.manual else {"url": source.origin, "sha256": source.sha256}
    return verify_marker(source.marker, source.name, source.dest, expect)


def write_stand_in(source: Source, base: Path | None = None) -> None:
    """An empty stand-in for a prepared source: one placeholder entry in its ``dest`` and a
    marker that :func:`check_prepared` accepts (size 0, the pinned hash or zeros). For plans
    and tests that must get past the refusal without the data (vislaw.plan writes these only
    inside its own temporary folder); relative paths resolve under ``base`` when given."""
    dest = base / source.dest if base else source.dest
    marker = base / source.marker if base else source.marker
    entry = f"placeholder-{source.name}"
    (dest / entry).mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"source": source.name, "dest": str(source.dest), "files": 0}
    if source.manual:
        record["manual"] = True
    else:
        record.update(url=source.origin, size=0, sha256=source.sha256 or "0" * 64, entries=[entry])
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(record))


def _limits(config: Mapping[str, Any]) -> tuple[Limits, Stall]:
    settings = DataSettings.from_config(config).prepare
    return (
        Limits(max_ratio=settings.max_unpack_ratio, max_gb=settings.max_unpack_gb),
        Stall(settings.stall_min_bytes_per_s, settings.stall_window_s),
    )


def _fetch_archive(
    config: Mapping[str, Any], source: Source, progress: bool, retries: int
) -> tuple[Path, dict[str, Any], bool]:
    """(the archive, what the marker records about it, whether prepare owns the file)."""
    if source.hub:
        archive = _fetch_hub_file(source, hf_home(config))
        digest = sha256_file(archive)
        if source.sha256 and digest != source.sha256.lower():
            raise PrepareError(
                f"data.sources.{source.name}: sha256 mismatch for {archive}: expected "
                f"{source.sha256}, got {digest}"
            )
        size = archive.stat().st_size
        return archive, {"size": size, "sha256": digest, "verified": True}, False
    got = download(
        str(source.url),
        source.state / "downloads" / source.name / source.filename,
        sha256=source.sha256,
        progress=progress,
        retries=retries,
        stall=_limits(config)[1],
    )
    return got.path, {"size": got.size, "sha256": got.sha256, "verified": got.verified}, True


def prepare_source(
    config: Mapping[str, Any], name: str, *, progress: bool = True, retries: int = 3
) -> Path:
    """Download, verify and unpack one source; returns its marker. A prepared source (verified
    marker) is left alone. One prepare at a time per source (a lock in the state folder).
    Raises PrepareError / DownloadError / UnpackError naming it."""
    try:
        source = sources(config)[name]
    except KeyError:
        raise PrepareError(f"data.sources has no entry '{name}'") from None
    if check_prepared(source) is None:
        return source.marker
    if source.manual:
        raise PrepareError(
            f"data.sources.{name}: cannot be downloaded automatically. {source.manual.strip()} "
            f"When the files are in {source.dest}, run: python -m vislaw.prepare mark "
            f"--config <config> --source {name}"
        )
    with source_lock(source.state, name):
        if check_prepared(source) is None:  # another prepare finished it while we waited
            return source.marker
        archive, record, owned = _fetch_archive(config, source, progress, retries)
        info = {"url": source.origin, **record}
        try:
            marker = unpack(
                archive,
                source.dest,
                name,
                kind=source.unpack,
                state=source.state,
                info=info,
                limits=_limits(config)[0],
            )
        except CorruptArchive:
            if owned:  # never leave a failed archive under its final name
                archive.unlink(missing_ok=True)
                record_path(archive).unlink(missing_ok=True)
            raise
        if owned:
            archive.unlink()
            record_path(archive).unlink(missing_ok=True)
    return marker


def run_prepare_data(
    config: Mapping[str, Any], names: Sequence[str] | None = None, done: str | Path | None = None
) -> list[Path]:
    """Step ``prepare_data``: prepare the ``data.sources`` entries ``names`` (all by default),
    printing each marker; then touch ``done`` (the rule's flag file) when given."""
    markers = []
    for name in names if names is not None else list(sources(config)):
        markers.append(prepare_source(config, name))
        print(f"prepared: {markers[-1]}")
    if done is not None:
        Path(done).touch()
    return markers


def mark_manual_source(config: Mapping[str, Any], name: str) -> Path:
    """Write the marker of a ``manual`` source once the user has put its files in place."""
    import json

    from vislaw.io.atomic import write_text_atomic

    source = sources(config)[name]
    if not source.dest.is_dir() or not any(source.dest.iterdir()):
        raise PrepareError(f"data.sources.{name}: {source.dest} is empty or missing")
    files = sum(1 for p in source.dest.rglob("*") if p.is_file())
    record = {"source": name, "dest": str(source.dest), "manual": True, "files": files}
    source.marker.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(source.marker, json.dumps(record))
    return source.marker

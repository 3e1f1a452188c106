"""What every rule entry point does before its real work: log to the rule's log file, honour
the job's thread count, and go offline when the config says so."""

from __future__ import annotations

import contextlib
import os
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def apply_runtime_settings(config: dict[str, Any], threads: int) -> None:
    """Offline switches and thread count; call before importing torch-heavy modules."""
    hf_home = (config.get("cache") or {}).get("hf_home")
    if hf_home:  # the cache `prepare` filled (vislaw.prepare.hub): read it, never the network
        os.environ["HF_HOME"] = str(Path(hf_home).resolve())
    if config.get("offline") or hf_home:
        for var in OFFLINE_VARS:
            os.environ[var] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(max(1, int(threads)))


def pick_device(config: dict[str, Any]) -> str:
    import torch

    wanted = config.get("device", "auto")
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


@contextlib.contextmanager
def job_log(path: str | Path | None) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to the rule's log file."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with (
        open(path, "w", buffering=1) as handle,
        contextlib.redirect_stdout(handle),
        contextlib.redirect_stderr(handle),
    ):
        try:
            yield
        except BaseException:
            traceback.print_exc(file=handle)
            raise

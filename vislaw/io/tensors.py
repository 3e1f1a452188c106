"""Safetensors with a checksum of their bytes, written at save and verified at load.

Apart from vislaw.io.provenance so that the record checks (the C score, the law input, run in
the light analysis env) do not pull in safetensors: a flipped bit in a projector is refused
rather than scored, naming the file (issue 22).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from vislaw.io.provenance import InputError

if TYPE_CHECKING:
    import torch

CHECKSUM_KEY = "tensors_sha256"


def tensors_sha256(tensors: Mapping[str, torch.Tensor]) -> str:
    """Checksum of named tensors: name, dtype, shape and bytes of each, in name order. Computed
    on the CPU copies that are written, so the value read back is the value written."""
    import torch

    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str]
) -> None:
    """Write ``tensors`` to ``path`` (atomic) with ``metadata`` plus their checksum."""
    from safetensors.torch import save_file

    from vislaw.io.atomic import atomic_path

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    meta = {**{str(k): str(v) for k, v in metadata.items()}, CHECKSUM_KEY: tensors_sha256(cpu)}
    with atomic_path(path) as tmp:
        save_file(cpu, str(tmp), metadata=meta)


def load_tensors(
    path: str | Path, *, require_checksum: bool = True
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a safetensors file, its checksum verified.

    Refuses, naming the file: a missing file, one safetensors cannot parse (truncated,
    overwritten), one with no checksum when ``require_checksum`` (written by something that is
    not this project's writer), and one whose tensors no longer match their checksum."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "not found")
    try:
        with safe_open(str(path), "pt") as handle:
            meta = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as err:  # safetensors raises its own SafetensorError, OSError, ...
        raise InputError(
            path, f"not a readable safetensors file (truncated or corrupt?): {err}"
        ) from err
    recorded = meta.get(CHECKSUM_KEY)
    if recorded is None:
        if require_checksum:
            raise InputError(
                path, f"no '{CHECKSUM_KEY}' in its metadata: rerun the step that wrote it"
            )
        return tensors, meta
    actual = tensors_sha256(tensors)
    if actual != recorded:
        raise InputError(
            path,
            f"tensors do not match the checksum written with them ({CHECKSUM_KEY} "
            f"{recorded[:12]}..., now {actual[:12]}...): the file changed after it was written",
        )
    return tensors, meta

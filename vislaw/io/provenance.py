"""What made a file, and the checks a consumer makes before it trusts one.

Every output of the pipeline records what made it: the encoder (name and resolved spec), the
settings it was made with, and the sha256 of the inputs it read. HDF5 features keep the record
in their ``meta`` attribute, safetensors in their metadata, ``vlm.json`` in its fields. A step
that reads such a file compares the record with the config it runs under and refuses a mismatch
naming the file and the field, because a copied, stale or hand-edited intermediate otherwise
gives a plausible number with rc 0 (issue 22: ``features/openclip.h5`` copied over
``features/clip224.h5`` scored as clip224).

Tensors carry a checksum of their bytes, written at save and verified at load, so a flipped bit
in a projector is refused rather than scored. Unreadable inputs (a truncated HDF5, a corrupt
safetensors or JSON, a word in a numeric CSV column) raise :class:`InputError` naming the file
and what is wrong instead of the library's bare error.

This module sits on the bottom floor (vislaw.io): it knows plain dicts, not encoder specs; the
callers turn their objects into dicts (``EncoderSpec.to_attrs``, ``spec_to_dict``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

# Spec fields that say how the features are computed. ``env`` (which conda env runs the job)
# and ``seed`` of a real checkpoint do not change a tensor; ``members`` is compared by name.
IGNORED_SPEC_FIELDS = frozenset({"env"})


class InputError(ValueError):
    """An input file that cannot be used: unreadable, or made from something else than the
    config says. The message starts with the file's path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


# ---- hashes -------------------------------------------------------------------------------------
def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks (memory does not grow with the file)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror or err})") from err
    return digest.hexdigest()


def input_hashes(paths: Mapping[str, str | Path]) -> dict[str, str]:
    """role -> sha256 of each input file (roles, not paths: a moved results tree keeps its
    records valid, and no absolute path leaks into an output)."""
    return {role: file_sha256(path) for role, path in sorted(paths.items())}


def settings_record(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A settings mapping as JSON values (dataclass sections go through ``asdict`` first);
    canonical so that the same settings always compare equal after a JSON round trip."""
    return json.loads(json.dumps(dict(settings), sort_keys=True, default=str))


# ---- records compared with the config -----------------------------------------------------------
def _differences(recorded: Any, wanted: Any, key: str) -> list[tuple[str, Any, Any]]:
    """(dotted key, recorded, wanted) for every leaf that differs; JSON-normalised first, so a
    tuple and a list, or 2 and 2.0, are the same value."""
    if isinstance(recorded, Mapping) and isinstance(wanted, Mapping):
        out = []
        for name in sorted(set(recorded) | set(wanted), key=str):
            out += _differences(recorded.get(name), wanted.get(name), f"{key}.{name}")
        return out
    a, b = settings_record({"v": recorded})["v"], settings_record({"v": wanted})["v"]
    return [] if a == b else [(key, recorded, wanted)]


def check_encoder_record(
    path: str | Path, recorded: Mapping[str, Any] | None, wanted: Mapping[str, Any]
) -> None:
    """Refuse a file whose recorded encoder spec is not the config's ``wanted`` spec (both as
    ``to_attrs``/``spec_to_dict`` dicts). The encoder's name is compared first, so a file of
    another encoder reads "records encoder 'openclip', config wants 'clip224'"; then every
    field, named ``encoders.<name>.<field>``."""
    name = wanted.get("name")
    if not recorded:
        raise InputError(path, f"records no encoder; config wants {name!r}")
    if recorded.get("name") != name:
        raise InputError(path, f"records encoder {recorded.get('name')!r}, config wants {name!r}")
    strip = {k: v for k, v in recorded.items() if k not in IGNORED_SPEC_FIELDS}
    want = {k: v for k, v in wanted.items() if k not in IGNORED_SPEC_FIELDS}
    strip["members"] = _member_names(recorded.get("members"))
    want["members"] = _member_names(wanted.get("members"))
    check_record(path, strip, want, f"encoders.{name}")


def _member_names(members: Any) -> list[str]:
    return [m.get("name") if isinstance(m, Mapping) else m for m in members or []]


def check_record(
    path: str | Path, recorded: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str
) -> None:
    """Refuse when any key of ``wanted`` differs from the record: the message names the file,
    the dotted config key (``prefix.key``) and both values (every difference, first one
    first)."""
    diffs = _differences(recorded, wanted, prefix)
    if diffs:
        text = "; ".join(f"records {k} = {a!r}, config wants {b!r}" for k, a, b in diffs)
        raise InputError(path, text)


def check_input_hashes(
    path: str | Path, recorded: Mapping[str, str] | None, inputs: Mapping[str, str | Path]
) -> None:
    """Refuse a file made from other inputs than the ones this step is given: for each role in
    ``inputs`` the recorded sha256 must be that file's sha256 now."""
    recorded = recorded or {}
    for role, input_path in sorted(inputs.items()):
        if role not in recorded:
            raise InputError(path, f"records no hash of its input '{role}' ({input_path})")
        actual = file_sha256(input_path)
        if recorded[role] != actual:
            raise InputError(
                path,
                f"was made from another '{role}' than {input_path} (sha256 recorded "
                f"{recorded[role][:12]}..., file {actual[:12]}...)",
            )


# ---- readers that name the file -----------------------------------------------------------------
def read_json(path: str | Path) -> Any:
    """A JSON file's value; a missing or unparsable file raises InputError naming it and the
    line and column of the error."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror or err})") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON (truncated or corrupt?): {err}") from err


def read_numeric_csv(path: str | Path, columns: Sequence[str]) -> dict[str, list[float]]:
    """``columns`` of a CSV as float lists; refuses a missing column, a row that is not a
    number (named by its line) and NaN/inf, which would silently bend a plotted curve."""
    path = Path(path)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(path, f"missing column(s) {missing} (has {reader.fieldnames})")
            out: dict[str, list[float]] = {c: [] for c in columns}
            for line, row in enumerate(reader, start=2):
                for column in columns:
                    out[column].append(_number(path, line, column, row[column]))
    except OSError as err:
        raise InputError(path, f"cannot read ({err.strerror or err})") from err
    return out


def check_numeric_frame(
    path: str | Path, frame: Any, columns: Sequence[str], *, missing_ok: Sequence[str] = ()
) -> None:
    """Refuse a table (a pandas DataFrame read from ``path``) whose ``columns`` hold anything
    but finite numbers: pandas reads a word into a column as strings and the arithmetic after
    it either fails far away or, worse, works. ``missing_ok``: columns where an empty cell
    (NaN) is a documented value (a benchmark that was not scored)."""
    path = Path(path)
    for column in columns:
        if column not in frame:
            raise InputError(path, f"missing column '{column}' (has {list(frame.columns)})")
        for i, value in enumerate(frame[column].tolist()):
            text = "" if value is None else str(value)
            if column in missing_ok and (text in ("", "nan") or value != value):
                continue
            _number(path, i + 2, column, text)


def _number(path: Path, line: int, column: str, text: str | None) -> float:
    try:
        value = float(text or "")
    except ValueError:
        raise InputError(
            path, f"line {line}, column '{column}': {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise InputError(path, f"line {line}, column '{column}': {text!r} is not finite")
    return value

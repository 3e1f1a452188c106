"""Our checkpoint format: what the DAG writes and every later stage reads (loading a model for
inference: vislaw.vlm.inference; LLaVA's released format: vislaw.vlm.llava).

Our stage folder (``results/<run>/stage{1,2}/<encoder>/``, see docs/training.md)::

    projector.safetensors  projector weights, keys as build_projector's ("0.weight", ...)
    encoder.safetensors    only when the recipe trained encoder parts (ConvLLaVA): those tensors,
                           keys of the encoder model's state_dict; the rest is rebuilt from the spec
    llm/                   whenever the LLM trained (stage 2; ConvLLaVA's pretraining in stage 1):
                           the LLM + tokenizer (save_pretrained)
    loss.csv               one row per optimizer step
    vlm.json               what to rebuild the model from; written last, so it marks "done"

LLaVA's formats: stage 1 ``mm_projector.bin`` (``torch.save`` of ``model.mm_projector.*``
tensors); stage 2 a folder with a ``llava_llama``/``llava_qwen`` config.json, the LLM's weights
plus ``model.mm_projector.*`` in (sharded) ``pytorch_model*.bin`` or ``*.safetensors``, and the
tokenizer. The vision tower is named by id there; here the encoder spec is stored instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vislaw.encoders.base import EncoderSpec
from vislaw.io.atomic import atomic_dir, write_text_atomic
from vislaw.io.provenance import InputError, check_encoder_record, read_json
from vislaw.io.tensors import CHECKSUM_KEY, load_tensors, save_tensors, tensors_sha256
from vislaw.layout import STAGE_ENCODER, STAGE_INFO, STAGE_LLM, STAGE_PROJECTOR
from vislaw.vlm.projector import build_projector, infer_projector

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from vislaw.encoders.base import VisionEncoder


FORMAT = "vislaw.vlm"
VERSION = 1
INFO_FILE = STAGE_INFO
PROJECTOR_FILE = STAGE_PROJECTOR
ENCODER_FILE = STAGE_ENCODER
LLM_DIR = STAGE_LLM


# ---- encoder specs ----------------------------------------------------------------------------
def spec_to_dict(spec: EncoderSpec) -> dict[str, Any]:
    """A JSON form of a spec that keeps fusion members whole (``to_attrs`` keeps only names)."""
    data = spec.to_attrs()
    data["members"] = [spec_to_dict(m) for m in spec.members]
    return data


def spec_from_dict(data: Mapping[str, Any]) -> EncoderSpec:
    known = {f.name for f in dataclasses.fields(EncoderSpec)}
    kwargs = {k: v for k, v in data.items() if k in known}
    kwargs["members"] = tuple(spec_from_dict(m) for m in data.get("members", []))
    return EncoderSpec(**kwargs)


# ---- our format -------------------------------------------------------------------------------
@dataclass
class VlmInfo:
    """Contents of ``vlm.json``. ``llm`` is a hub id, or (``llm_local``) a folder path relative
    to the stage folder, so a results tree can move as a whole."""

    stage: int
    encoder: EncoderSpec
    projector_type: str
    projector_in: int
    projector_out: int
    llm: str
    llm_local: bool
    template: str
    image_tokens: int
    pad_to_square: bool = True
    max_length: int = 2048
    training: dict[str, Any] = field(default_factory=dict)
    # File (in the stage folder) of trained encoder tensors; None: the encoder is the spec's.
    encoder_weights: str | None = None
    # The feature protocol and channel layout the projector was trained on (filled from the
    # encoder spec when written; import-llava records what the released checkpoint needs), and
    # whether the user explicitly accepted a protocol other than the recorded one.
    feature_protocol: str | None = None
    feature_layout: str | None = None
    protocol_override: bool = False
    # Folder (in the stage folder) of a PEFT LoRA adapter applied over ``llm`` (stage 2 with
    # train.stage2.lora); None: ``llm`` is the trained LLM itself.
    llm_adapter: str | None = None
    # File name -> checksum (``tensors_sha256``) of the tensor files written with this record,
    # so a projector swapped in from another stage folder (its own checksum intact) is refused.
    weights: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_parts(
        cls,
        stage: int,
        spec: EncoderSpec,
        encoder: VisionEncoder,
        llm: PreTrainedModel,
        *,
        projector_type: str,
        template: str,
        llm_ref: str = LLM_DIR,
        llm_local: bool = True,
        **extra: Any,
    ) -> VlmInfo:
        """The info of a stage built from these parts: the projector's sizes and the image
        token count are read off the encoder and the LLM, so they cannot disagree with them."""
        rows, cols = encoder.grid
        return cls(
            stage=stage,
            encoder=spec,
            projector_type=projector_type,
            projector_in=encoder.channels,
            projector_out=int(llm.config.hidden_size),
            llm=llm_ref,
            llm_local=llm_local,
            template=template,
            image_tokens=rows * cols,
            **extra,
        )

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["encoder"] = spec_to_dict(self.encoder)
        return json.dumps({"format": FORMAT, "version": VERSION, **data}, indent=2, default=str)

    @classmethod
    def read(cls, folder: str | Path) -> VlmInfo:
        path = Path(folder) / INFO_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} is not a finished stage folder")
        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InputError(path, f"not a {FORMAT} file")
        if data.get("version") != VERSION:
            raise InputError(path, f"version {data.get('version')!r}, expected {VERSION}")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            kwargs["encoder"] = spec_from_dict(data["encoder"])
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as err:
            raise InputError(path, f"fields do not form a stage record: {err!r}") from err

    def check_encoder(self, spec: EncoderSpec, folder: str | Path) -> None:
        """Refuse this stage folder for encoder ``spec`` unless ``vlm.json`` records exactly
        that spec (a hand-edited ``input_size``, a folder copied from another encoder, a spec
        changed in the config since the stage was trained), naming the file and the key."""
        check_encoder_record(
            Path(folder) / INFO_FILE, spec_to_dict(self.encoder), spec_to_dict(spec)
        )

    def llm_source(self, folder: str | Path) -> str:
        """Where ``from_pretrained`` finds the LLM of the stage folder ``folder``."""
        return str((Path(folder) / self.llm).resolve()) if self.llm_local else self.llm


def llm_reference(llm: str, folder: str | Path) -> tuple[str, bool]:
    """(reference, local) for VlmInfo: a local folder is stored relative to ``folder``."""
    if Path(llm).is_dir():
        return os.path.relpath(Path(llm).resolve(), Path(folder).resolve()), True
    return llm, False


def save_projector(state: Mapping[str, torch.Tensor], path: str | Path, kind: str) -> None:
    """Projector tensors with their type and a checksum (verified by :func:`load_projector`)."""
    save_tensors(state, path, {"projector_type": kind, "format": FORMAT})


def load_projector(path: str | Path, info: VlmInfo | None = None) -> tuple[nn.Module, str]:
    """The projector module and its type from a ``projector.safetensors``; refuses a file that
    is unreadable or whose tensors changed since they were written (checksum), naming it, and
    (``info`` given) one that is not the projector its ``vlm.json`` was written with."""
    state, meta = load_tensors(path)
    if info is not None:
        check_weights(info, path, meta)
    kind, in_dim, out_dim = infer_projector(state)
    kind = meta.get("projector_type", kind)
    projector = build_projector(kind, in_dim, out_dim)
    projector.load_state_dict(state)
    return projector, kind


def save_encoder_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Trained encoder tensors with a checksum (verified by :func:`read_encoder_weights`)."""
    save_tensors(state, path, {"format": FORMAT, "content": "trained encoder"})


def read_encoder_weights(
    folder: str | Path, info: VlmInfo | None = None
) -> dict[str, torch.Tensor]:
    """The trained encoder tensors of a stage folder ({} when its encoder is the spec's),
    checksum verified."""
    info = info or VlmInfo.read(folder)
    if not info.encoder_weights:
        return {}
    path = Path(folder) / info.encoder_weights
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found, but {Path(folder) / INFO_FILE} names it")
    tensors, meta = load_tensors(path)
    check_weights(info, path, meta)
    return tensors


def check_weights(info: VlmInfo, path: str | Path, meta: Mapping[str, str]) -> None:
    """Refuse a tensor file of a stage folder whose checksum is not the one ``vlm.json``
    recorded for it (records written before ``weights`` existed pass)."""
    recorded = info.weights.get(Path(path).name)
    actual = meta.get(CHECKSUM_KEY)
    if recorded is not None and recorded != actual:
        raise InputError(
            path,
            f"is not the file {INFO_FILE} was written with (weights.{Path(path).name} "
            f"{recorded[:12]}..., file {str(actual)[:12]}...): copied from another stage folder?",
        )


def write_stage(
    folder: str | Path,
    info: VlmInfo,
    projector_state: Mapping[str, torch.Tensor],
    llm: PreTrainedModel | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    llm_state_dict: Mapping[str, torch.Tensor] | None = None,
    encoder_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a stage folder; ``llm`` (stage 2) goes to ``llm/`` with the tokenizer, using
    ``llm_state_dict`` when given (weights gathered from ZeRO-3 partitions). ``encoder_state``
    (trained encoder tensors) goes to encoder.safetensors and vlm.json names it; without it a
    stale file of an earlier run is removed. vlm.json last."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = with_feature_record(info)
    save_projector(projector_state, folder / PROJECTOR_FILE, info.projector_type)
    weights = {PROJECTOR_FILE: tensors_sha256(projector_state)}
    if encoder_state:
        save_encoder_weights(encoder_state, folder / ENCODER_FILE)
        weights[ENCODER_FILE] = tensors_sha256(encoder_state)
        info = dataclasses.replace(info, encoder_weights=ENCODER_FILE)
    else:
        (folder / ENCODER_FILE).unlink(missing_ok=True)
        info = dataclasses.replace(info, encoder_weights=None)
    info = dataclasses.replace(info, weights=weights)
    if llm is not None:
        with atomic_dir(folder / LLM_DIR) as tmp:
            kwargs = {"state_dict": dict(llm_state_dict)} if llm_state_dict is not None else {}
            llm.save_pretrained(tmp, **kwargs)
            if tokenizer is not None:
                tokenizer.save_pretrained(tmp)
    write_text_atomic(folder / INFO_FILE, info.to_json())
    return folder


# ---- the feature protocol guard (docs/encoders.md, "Imported checkpoints") --------------------
def with_feature_record(info: VlmInfo) -> VlmInfo:
    """``info`` with the protocol and channel layout filled in from its encoder spec where unset
    (a folder we train records what it was trained on)."""
    from vislaw.encoders.registry import feature_layout

    return dataclasses.replace(
        info,
        feature_protocol=info.feature_protocol or info.encoder.protocol,
        feature_layout=info.feature_layout or feature_layout(info.encoder),
    )


def check_feature_match(
    info: VlmInfo, spec: EncoderSpec, folder: str | Path, channels: int | None = None
) -> None:
    """Refuse to feed a stage folder's projector features it was not trained on.

    - width: ``channels`` (when given) must equal the projector's input width;
    - layout: the spec's channel layout must equal the recorded one (a permuted column order,
      e.g. DiT/SD3 space-to-depth (dx, dy, D) vs (dy, dx, D), cannot be seen in the weights);
    - protocol: the spec's protocol must equal the recorded one, unless the folder records an
      explicit override (``import-llava --allow-protocol-mismatch``).
    Folders written before these were recorded (no ``feature_protocol``) pass the last two.
    """
    where = Path(folder) / INFO_FILE
    if channels is not None and channels != info.projector_in:
        raise ValueError(
            f"{where}: projector takes {info.projector_in} channels, encoder "
            f"'{spec.name}' gives {channels}"
        )
    check_protocol(
        info.feature_protocol, info.feature_layout, info.protocol_override, spec, str(where)
    )


def check_protocol(
    protocol: str | None, layout: str | None, override: bool, spec: EncoderSpec, where: str
) -> None:
    """The layout and protocol halves of :func:`check_feature_match` (None: not recorded)."""
    from vislaw.encoders.registry import feature_layout

    given = feature_layout(spec)
    if layout and given != layout:
        raise ValueError(
            f"{where}: the projector's input columns are laid out as {layout!r}, encoder "
            f"'{spec.name}' (protocol {spec.protocol}) gives {given!r}: the same channels in "
            f"another order. Set encoders.{spec.name}.protocol: {protocol} to feed it the "
            f"features it was trained on"
        )
    if protocol and spec.protocol != protocol and not override:
        raise ValueError(
            f"{where}: this checkpoint needs protocol '{protocol}' features, encoder "
            f"'{spec.name}' uses protocol '{spec.protocol}'. Set encoders.{spec.name}.protocol: "
            f"{protocol}, or re-import with --allow-protocol-mismatch to accept the difference "
            f"explicitly"
        )


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token (LLaVA uses unk for Vicuna, which has none)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer

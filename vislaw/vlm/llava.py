"""LLaVA's released checkpoint format, so a user can start from the paper authors' checkpoints.

LLaVA's formats: stage 1 ``mm_projector.bin`` (``torch.save`` of ``model.mm_projector.*``
tensors); stage 2 a folder with a ``llava_llama``/``llava_qwen`` config.json, the LLM's weights
plus ``model.mm_projector.*`` in (sharded) ``pytorch_model*.bin`` or ``*.safetensors``, and the
tokenizer. The vision tower is named by id there; here the encoder spec is stored instead.

Step ``import-llava``: :func:`run_import_llava`; CLI ``python -m vislaw.vlm import-llava
--stage 1 --src mm_projector.bin --config config.yaml --encoder clip336
--out results/paper/stage1/clip336`` (vislaw/vlm/__main__.py).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vislaw.encoders.base import EncoderSpec
from vislaw.io.atomic import atomic_path
from vislaw.vlm.checkpoints import (
    LLM_DIR,
    VlmInfo,
    check_protocol,
    llm_reference,
    prepare_tokenizer,
    write_stage,
)
from vislaw.vlm.projector import infer_projector

if TYPE_CHECKING:
    from vislaw.train.settings import LlmSettings, TrainSettings


LLAVA_PROJECTOR_PREFIX = "mm_projector."
# LLaVA model types and the stock transformers architecture of their language model.
LLAVA_BASE_TYPES = {
    "llava_llama": "llama",
    "llava": "llama",
    "llava_qwen": "qwen2",
    "llava_qwen2": "qwen2",
    "llava_mistral": "mistral",
}


def strip_llava_projector_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``model.mm_projector.0.weight`` -> ``0.weight`` (any prefix before ``mm_projector.``)."""
    out = {}
    for key, value in state.items():
        if LLAVA_PROJECTOR_PREFIX in key:
            out[key.split(LLAVA_PROJECTOR_PREFIX, 1)[1]] = value
    if not out:
        raise ValueError(f"no '{LLAVA_PROJECTOR_PREFIX}*' tensors among keys {sorted(state)[:5]}")
    return out


def _load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def read_llava_projector(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Projector weights and type from a released ``mm_projector.bin`` (or .safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LLaVA projector file not found: {path}")
    state = strip_llava_projector_keys(_load_tensor_file(path))
    kind, _, _ = infer_projector(state)
    return state, kind


def write_llava_projector(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    """Our projector weights as LLaVA's ``mm_projector.bin`` (for use with LLaVA's code)."""
    tensors = {f"model.{LLAVA_PROJECTOR_PREFIX}{k}": v.detach().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)


def _llava_weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin weights in {folder}")
    return files


def llava_base_config(folder: str | Path) -> Any:
    """The language model's stock transformers config from a LLaVA ``config.json``."""
    from transformers import AutoConfig

    data = json.loads((Path(folder) / "config.json").read_text())
    model_type = data.get("model_type", "")
    if model_type not in LLAVA_BASE_TYPES:
        raise ValueError(
            f"{folder}/config.json: model_type {model_type!r} is not a LLaVA type "
            f"({sorted(LLAVA_BASE_TYPES)})"
        )
    base = LLAVA_BASE_TYPES[model_type]
    fields = {
        k: v
        for k, v in data.items()
        if not k.startswith(("mm_", "tune_mm", "freeze_mm", "image_", "_name"))
        and k not in {"model_type", "architectures", "transformers_version", "use_mm_proj"}
    }
    return AutoConfig.for_model(base, **fields)


def import_llava(
    src: str | Path,
    out_dir: str | Path,
    spec: EncoderSpec,
    stage: int,
    *,
    llm: str | None = None,
    template: str | None = None,
    pad_to_square: bool = True,
    max_length: int = 2048,
    protocol: str | None = None,
    allow_protocol_mismatch: bool = False,
) -> Path:
    """Convert a released LLaVA checkpoint into our stage folder.

    Stage 1: ``src`` is ``mm_projector.bin``; ``llm`` names the frozen LLM it was trained with
    (hub id or folder). Stage 2: ``src`` is the full model folder; its LLM and tokenizer are
    re-saved under ``llm/``.

    ``protocol`` is the feature protocol the checkpoint was trained on: ``paper`` for the
    authors' released checkpoints (the CLI's default); None takes the spec's. It and its
    channel layout are recorded in vlm.json; a spec
    of another protocol is refused unless ``allow_protocol_mismatch`` (recorded too), and a
    spec of another channel layout always (see :func:`check_feature_match`).
    """
    from vislaw.encoders.registry import feature_layout, token_grid

    src, out_dir = Path(src), Path(out_dir)
    rows, cols = token_grid(spec)
    protocol = protocol or spec.protocol
    layout = feature_layout(dataclasses.replace(spec, protocol=protocol))
    # Before anything is loaded: the checkpoint's features vs the config's encoder.
    check_protocol(protocol, layout, allow_protocol_mismatch, spec, f"import of {src}")
    if stage == 1:
        if not llm:
            raise ValueError("a stage-1 import needs the LLM the projector was trained with")
        state, kind = read_llava_projector(src)
        reference, local = llm_reference(llm, out_dir)
        llm_model = tokenizer = None
    elif stage == 2:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not allow_protocol_mismatch:
            check_aspect_ratio(src, protocol)
        check_tower(src, spec)
        weights: dict[str, torch.Tensor] = {}
        for path in _llava_weight_files(src):
            tensors = _load_tensor_file(path)
            weights.update({k: v for k, v in tensors.items() if LLAVA_PROJECTOR_PREFIX in k})
        state = strip_llava_projector_keys(weights)
        kind, _, _ = infer_projector(state)
        llm_model = AutoModelForCausalLM.from_pretrained(src, config=llava_base_config(src))
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(src))
        reference, local = LLM_DIR, True
    else:
        raise ValueError(f"stage must be 1 or 2, not {stage}")
    _, in_dim, out_dim = infer_projector(state)
    info = VlmInfo(
        stage=stage,
        encoder=spec,
        projector_type=kind,
        projector_in=in_dim,
        projector_out=out_dim,
        llm=reference,
        llm_local=local,
        template=template or ("plain" if stage == 1 else "vicuna_v1"),
        image_tokens=rows * cols,
        pad_to_square=pad_to_square,
        max_length=max_length,
        training={"imported_from": str(src)},
        feature_protocol=protocol,
        feature_layout=layout,
        protocol_override=allow_protocol_mismatch,
    )
    return write_stage(out_dir, info, state, llm_model, tokenizer)


# LLaVA's ``image_aspect_ratio`` and the protocol whose MLLM geometry it is: ``pad`` is our
# letterbox, ``square`` the authors' runs (stock processor crop / stretch).
ASPECT_PROTOCOL = {"pad": "vislaw", "square": "paper"}


def check_aspect_ratio(folder: Path, protocol: str) -> None:
    """Refuse a stage-2 import whose own config.json names the other protocol's geometry (e.g.
    LLaVA-1.5's releases, trained with ``pad``, imported as the authors' ``paper``)."""
    path = folder / "config.json"
    aspect = json.loads(path.read_text()).get("image_aspect_ratio") if path.is_file() else None
    expected = ASPECT_PROTOCOL.get(str(aspect))
    if expected and expected != protocol:
        raise ValueError(
            f"{path}: image_aspect_ratio {aspect!r} is protocol '{expected}' geometry, the "
            f"import says '{protocol}'. Pass --protocol {expected} (and set that protocol on "
            f"the encoder), or --allow-protocol-mismatch"
        )


def run_import_llava(
    train: TrainSettings,
    llm_settings: LlmSettings,
    spec: EncoderSpec,
    src: str | Path,
    out_dir: str | Path,
    stage: int,
    *,
    llm: str | None = None,
    protocol: str | None = None,
    allow_protocol_mismatch: bool = False,
) -> Path:
    """Step ``import-llava``: :func:`import_llava` with the config's template, geometry and
    length for ``stage``; stage 1's LLM is ``llm`` or the config's ``llm.model_id``."""
    return import_llava(
        src,
        out_dir,
        spec,
        stage,
        llm=llm or llm_settings.model_id,
        template=train.stage(stage).template,
        pad_to_square=train.pad_to_square,
        max_length=train.max_length,
        protocol=protocol,
        allow_protocol_mismatch=allow_protocol_mismatch,
    )


def check_tower(folder: Path, spec: EncoderSpec) -> None:
    """Refuse a stage-2 checkpoint whose own config.json names another vision tower than
    ``spec``: other ids, the fusion's members in another order (the projector's input columns
    would be swapped while every width still agrees), or a diffusion tower read at another
    block or size than the spec's (the authors' ``up_ft_index`` / ``img_size``)."""
    path = folder / "config.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    members = spec.members or (spec,)
    tower = data.get("mm_vision_tower")
    ids = [member.model_id for member in members]
    if isinstance(tower, str) and all(ids) and not Path(tower).exists():
        _check_tower_ids(path, tower, [str(i) for i in ids], spec)
    for member in members:
        _check_authors_reading(path, data, member)


def _check_tower_ids(path: Path, tower: str, ids: list[str], spec: EncoderSpec) -> None:
    """The authors write a channel fusion as its towers' ids joined by '.' (',' is their
    mixture of features, one projector per tower: not a fusion this project builds)."""
    if tower == ".".join(ids):
        return
    key = f"encoders.{spec.name}" + (".members" if spec.members else ".model_id")
    for order in itertools.permutations(ids):
        if ".".join(order) == tower:
            raise ValueError(
                f"{path}: mm_vision_tower {tower!r} concatenates the towers in the order "
                f"{list(order)}; config key '{key}' orders them {ids}: the projector's input "
                "columns would be swapped"
            )
    raise ValueError(
        f"{path}: mm_vision_tower {tower!r} is not the tower of config key '{key}' "
        f"({'.'.join(ids)!r}): the checkpoint was trained on another encoder"
    )


def _check_authors_reading(path: Path, data: Mapping[str, Any], spec: EncoderSpec) -> None:
    """``up_ft_index`` and ``img_size`` as the authors' training recorded them, against the
    spec. A block counted from the end (-1) cannot be compared with one counted from the start
    without the model, so only indices of the same sign are compared."""
    from vislaw.encoders.registry import family_class

    for key, (spec_key, wanted) in family_class(spec.family).authors_reading(spec).items():
        if key not in data:
            continue
        found = int(data[key])
        if key == "up_ft_index" and (found < 0) != (wanted < 0):
            continue
        if found != wanted:
            raise ValueError(
                f"{path}: {key} {found} (the authors' training setting) differs from config "
                f"key 'encoders.{spec.name}.{spec_key}' ({wanted})"
            )

"""Checkpoint formats: ours (what the DAG writes and every later stage reads) and LLaVA's
released format (so a user can start from the paper authors' checkpoints).

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

CLI: ``python -m vislaw.vlm.checkpoints import-llava --stage 1 --src mm_projector.bin
--config config.yaml --encoder clip336 --out results/paper/stage1/clip336``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vislaw.encoders.base import EncoderSpec
from vislaw.io.atomic import atomic_dir, atomic_path, write_text_atomic
from vislaw.layout import STAGE_INFO, STAGE_LLM, STAGE_PROJECTOR
from vislaw.vlm.model import Pixels, map_pixels, stack_pixels
from vislaw.vlm.projector import build_projector, infer_projector
from vislaw.vlm.templates import Template, get_template, tokenize_prompt

if TYPE_CHECKING:
    from PIL import Image
    from torch import nn
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from vislaw.vlm.model import LlavaStyleModel

FORMAT = "vislaw.vlm"
VERSION = 1
INFO_FILE = STAGE_INFO
PROJECTOR_FILE = STAGE_PROJECTOR
ENCODER_FILE = "encoder.safetensors"
LLM_DIR = STAGE_LLM
LLAVA_PROJECTOR_PREFIX = "mm_projector."
# LLaVA model types and the stock transformers architecture of their language model.
LLAVA_BASE_TYPES = {
    "llava_llama": "llama",
    "llava": "llama",
    "llava_qwen": "qwen2",
    "llava_qwen2": "qwen2",
    "llava_mistral": "mistral",
}


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

    def to_json(self) -> str:
        data = dataclasses.asdict(self)
        data["encoder"] = spec_to_dict(self.encoder)
        return json.dumps({"format": FORMAT, "version": VERSION, **data}, indent=2, default=str)

    @classmethod
    def read(cls, folder: str | Path) -> VlmInfo:
        path = Path(folder) / INFO_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: {folder} is not a finished stage folder")
        data = json.loads(path.read_text())
        if data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["encoder"] = spec_from_dict(data["encoder"])
        return cls(**kwargs)

    def llm_source(self, folder: str | Path) -> str:
        """Where ``from_pretrained`` finds the LLM of the stage folder ``folder``."""
        return str((Path(folder) / self.llm).resolve()) if self.llm_local else self.llm


def llm_reference(llm: str, folder: str | Path) -> tuple[str, bool]:
    """(reference, local) for VlmInfo: a local folder is stored relative to ``folder``."""
    if Path(llm).is_dir():
        return os.path.relpath(Path(llm).resolve(), Path(folder).resolve()), True
    return llm, False


def save_projector(state: Mapping[str, torch.Tensor], path: str | Path, kind: str) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"projector_type": kind, "format": FORMAT})


def load_projector(path: str | Path) -> tuple[nn.Module, str]:
    """The projector module and its type from a ``projector.safetensors``."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as handle:
        meta = handle.metadata() or {}
    state = load_file(str(path))
    kind, in_dim, out_dim = infer_projector(state)
    kind = meta.get("projector_type", kind)
    projector = build_projector(kind, in_dim, out_dim)
    projector.load_state_dict(state)
    return projector, kind


def save_encoder_weights(state: Mapping[str, torch.Tensor], path: str | Path) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT, "content": "trained encoder"})


def read_encoder_weights(
    folder: str | Path, info: VlmInfo | None = None
) -> dict[str, torch.Tensor]:
    """The trained encoder tensors of a stage folder ({} when its encoder is the spec's)."""
    from safetensors.torch import load_file

    info = info or VlmInfo.read(folder)
    if not info.encoder_weights:
        return {}
    path = Path(folder) / info.encoder_weights
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found, but {Path(folder) / INFO_FILE} names it")
    return load_file(str(path))


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
    if encoder_state:
        save_encoder_weights(encoder_state, folder / ENCODER_FILE)
        info = dataclasses.replace(info, encoder_weights=ENCODER_FILE)
    else:
        (folder / ENCODER_FILE).unlink(missing_ok=True)
        info = dataclasses.replace(info, encoder_weights=None)
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


def with_lora(llm: PreTrainedModel, lora: Mapping[str, Any]) -> nn.Module:
    """The LLM wrapped with trainable LoRA adapters (peft); its own weights are frozen.

    ``lora``: r, alpha, dropout, targets (module names, e.g. q_proj v_proj; "all-linear").
    """
    from peft import LoraConfig, get_peft_model

    targets = lora.get("targets", ["q_proj", "v_proj"])
    config = LoraConfig(
        r=int(lora.get("r", 8)),
        lora_alpha=float(lora.get("alpha", 16)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=targets if isinstance(targets, str) else list(targets),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(llm, config)


def merge_lora(llm: PreTrainedModel, adapter: str | Path) -> PreTrainedModel:
    """The LLM with a saved LoRA adapter merged into its weights (plain inference after)."""
    from peft import PeftModel

    if not (Path(adapter) / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{adapter}: no adapter_config.json (vlm.json names a LoRA adapter)"
        )
    return PeftModel.from_pretrained(llm, str(adapter)).merge_and_unload()


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token (LLaVA uses unk for Vicuna, which has none)."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


@dataclass
class LoadedVlm:
    """A ready model with what it needs to turn images and questions into answers."""

    model: LlavaStyleModel
    tokenizer: PreTrainedTokenizerBase
    template: Template
    info: VlmInfo

    def pixels(self, images: Sequence[Image.Image]) -> Pixels:
        from vislaw.vlm.model import preprocess_images

        return preprocess_images(self.model.encoder, images, self.info.pad_to_square)

    def prompt_batch(
        self, questions: Sequence[str], images: Sequence[Image.Image | None]
    ) -> dict[str, Any]:
        """Left-padded prompt ids, attention mask, image mask and (when a prompt has an image)
        pixels for ``generate``."""
        if len(questions) != len(images):
            raise ValueError(f"{len(questions)} questions for {len(images)} images")
        prompts = [
            tokenize_prompt(self.template, q, self.tokenizer, im is not None)
            for q, im in zip(questions, images, strict=True)
        ]
        length = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(prompts), length), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, length - len(p) :] = torch.tensor(p)
            mask[b, length - len(p) :] = 1
        shown = [im for im in images if im is not None]
        pixels = None
        if shown:
            per_image = iter(map_pixels_rows(self.pixels(shown)))
            pixels = stack_pixels([next(per_image) if im is not None else None for im in images])
        batch = {
            "input_ids": ids,
            "attention_mask": mask,
            "image_mask": torch.tensor([im is not None for im in images]),
        }
        if pixels is not None:
            batch["pixel_values"] = pixels
        return batch

    def answer(
        self,
        questions: Sequence[str],
        images: Sequence[Image.Image | None],
        max_new_tokens: int = 32,
        **generate_kwargs: Any,
    ) -> list[str]:
        """Greedy answers (text up to the template's stop string)."""
        device = next(self.model.llm.parameters()).device
        batch = {
            k: map_pixels(lambda t: t.to(device), v)
            for k, v in self.prompt_batch(questions, images).items()
        }
        generate_kwargs.setdefault("do_sample", False)
        generate_kwargs.setdefault("pad_token_id", self.tokenizer.pad_token_id)
        generate_kwargs.setdefault("eos_token_id", self.tokenizer.eos_token_id)
        out = self.model.generate(**batch, max_new_tokens=max_new_tokens, **generate_kwargs)
        texts = self.tokenizer.batch_decode(out, skip_special_tokens=False)
        pad = self.tokenizer.pad_token
        return [t.replace(pad, "").split(self.template.stop)[0].strip() for t in texts]


def map_pixels_rows(pixels: Pixels) -> list[Pixels]:
    """Split batched pixels into per-image pixels (without the batch axis)."""
    if isinstance(pixels, torch.Tensor):
        return list(pixels)
    return [list(row) for row in zip(*pixels, strict=True)]


def load_vlm(
    folder: str | Path, device: str = "cpu", dtype: torch.dtype | None = None
) -> LoadedVlm:
    """Rebuild a stage-1 or stage-2 model from its folder (encoder from the stored spec)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vislaw.encoders.registry import build_encoder
    from vislaw.vlm.model import LlavaStyleModel

    folder = Path(folder)
    info = VlmInfo.read(folder)
    source = info.llm_source(folder)
    adapter = folder / info.llm_adapter if info.llm_adapter else None
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(adapter or source))
    llm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    if adapter is not None:
        llm = merge_lora(llm, adapter)
    projector, _ = load_projector(folder / PROJECTOR_FILE)
    encoder = build_encoder(info.encoder, device=device, dtype=dtype)
    trained = read_encoder_weights(folder, info)
    if trained:
        encoder.load_trained(trained, source=str(folder / str(info.encoder_weights)))
    check_feature_match(info, info.encoder, folder, encoder.channels)
    model = LlavaStyleModel(encoder, projector.to(dtype or torch.float32), llm).to(device).eval()
    return LoadedVlm(model, tokenizer, get_template(info.template), info)


# ---- LLaVA's released format ------------------------------------------------------------------
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


def main(argv: Sequence[str] | None = None) -> None:
    from vislaw.config import load_config
    from vislaw.encoders.registry import resolve_encoders

    parser = argparse.ArgumentParser(
        prog="python -m vislaw.vlm.checkpoints",
        description="Import a released LLaVA-format checkpoint as a vislaw stage folder.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import-llava", help="mm_projector.bin (stage 1) or a LLaVA folder")
    imp.add_argument("--stage", type=int, choices=[1, 2], required=True)
    imp.add_argument("--src", required=True, help="mm_projector.bin, or the stage-2 folder")
    imp.add_argument("--config", required=True, help="workflow config naming the encoder")
    imp.add_argument("--encoder", required=True, help="encoder name in the config")
    imp.add_argument("--out", required=True, help="stage folder to write")
    imp.add_argument("--llm", help="stage 1: LLM id/folder (default: the config's llm.model_id)")
    imp.add_argument(
        "--protocol",
        choices=["paper", "vislaw"],
        default="paper",
        help="feature protocol the checkpoint was trained on (the authors' releases: paper)",
    )
    imp.add_argument(
        "--allow-protocol-mismatch",
        action="store_true",
        help="accept an encoder whose protocol differs from --protocol (channel layout must agree)",
    )
    args = parser.parse_args(argv)
    config = load_config(args.config)
    specs = resolve_encoders(config)
    if args.encoder not in specs:
        parser.error(f"encoder {args.encoder!r} is not in {args.config} ({sorted(specs)})")
    train = config.get("train", {})
    llm = args.llm or config["llm"].get("model_id")
    out = import_llava(
        args.src,
        args.out,
        specs[args.encoder],
        args.stage,
        llm=llm,
        template=train.get(f"stage{args.stage}", {}).get("template"),
        pad_to_square=train.get("pad_to_square", True),
        max_length=train.get("max_length", 2048),
        protocol=args.protocol,
        allow_protocol_mismatch=args.allow_protocol_mismatch,
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""A stage folder as a ready model (:func:`load_vlm`) that turns images and questions into
prompts, answers and log-likelihoods (the lmms-eval plugin, LMVR and the A score use it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vislaw.vlm.chat_templates import Template, get_template, stop_token_ids, tokenize_prompt
from vislaw.vlm.checkpoints import (
    PROJECTOR_FILE,
    VlmInfo,
    check_feature_match,
    load_projector,
    prepare_tokenizer,
    read_encoder_weights,
)
from vislaw.vlm.lora import merge_lora
from vislaw.vlm.model import Pixels, map_pixels, stack_pixels

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedTokenizerBase

    from vislaw.encoders.base import EncoderSpec
    from vislaw.vlm.model import LlavaStyleModel


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
        generate_kwargs.setdefault("eos_token_id", stop_token_ids(self.template, self.tokenizer))
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
    folder: str | Path,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    spec: EncoderSpec | None = None,
) -> LoadedVlm:
    """Rebuild a stage-1 or stage-2 model from its folder (encoder from the stored spec).
    ``spec``: the config's encoder; the folder must record exactly it (``vlm.json`` edited or
    copied from another encoder is refused, naming the file and the key)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vislaw.encoders.registry import build_encoder
    from vislaw.vlm.model import LlavaStyleModel

    folder = Path(folder)
    info = VlmInfo.read(folder)
    if spec is not None:
        info.check_encoder(spec, folder)
    source = info.llm_source(folder)
    adapter = folder / info.llm_adapter if info.llm_adapter else None
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(adapter or source))
    llm = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    if adapter is not None:
        llm = merge_lora(llm, adapter)
    projector, _ = load_projector(folder / PROJECTOR_FILE, info)
    encoder = build_encoder(info.encoder, device=device, dtype=dtype)
    trained = read_encoder_weights(folder, info)
    if trained:
        encoder.load_trained(trained, source=str(folder / str(info.encoder_weights)))
    check_feature_match(info, info.encoder, folder, encoder.channels)
    model = LlavaStyleModel(encoder, projector.to(dtype or torch.float32), llm).to(device).eval()
    return LoadedVlm(model, tokenizer, get_template(info.template, tokenizer), info)

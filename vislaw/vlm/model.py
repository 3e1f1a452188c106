"""The LLaVA-1.5-style MLLM: frozen vision encoder -> projector -> any Hugging Face causal LM.

Each ``IMAGE_TOKEN_INDEX`` in ``input_ids`` is replaced by the encoder's projected patch tokens
(:func:`splice_image_tokens`); labels there are -100, so the loss covers text targets only.

The encoder is held *outside* the module tree (a plain attribute, not a submodule): optimizers,
DeepSpeed partitioning and ``state_dict`` see only the projector and the LLM, which are exactly
what training changes and checkpoints store. The encoder is rebuilt from its spec when loading.
A recipe that trains encoder parts (ConvLLaVA) passes ``train_encoder=True``: the encoder's model
then joins the tree as ``vision_tower`` and runs with autograd.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vislaw.vlm.chat_templates import IGNORE_INDEX, IMAGE_TOKEN_INDEX

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedModel

    from vislaw.encoders.base import VisionEncoder


# An encoder's pixels: one tensor (B, 3, S, S), or one per member for a fusion (each member
# keeps its own size and normalisation). These helpers treat both alike.
Pixels = torch.Tensor | list[torch.Tensor]


def map_pixels(fn: Callable[[torch.Tensor], torch.Tensor], pixels: Pixels) -> Pixels:
    return fn(pixels) if isinstance(pixels, torch.Tensor) else [fn(p) for p in pixels]


def pixel_rows(pixels: Pixels) -> int:
    return int((pixels if isinstance(pixels, torch.Tensor) else pixels[0]).shape[0])


def stack_pixels(per_sample: Sequence[Pixels | None]) -> Pixels | None:
    """Batch per-sample pixels (each without a batch axis); None rows become zeros."""
    shown = [p for p in per_sample if p is not None]
    if not shown:
        return None
    if isinstance(shown[0], torch.Tensor):
        blank = torch.zeros_like(shown[0])
        return torch.stack([blank if p is None else p for p in per_sample])
    return [
        torch.stack([torch.zeros_like(shown[0][m]) if p is None else p[m] for p in per_sample])
        for m in range(len(shown[0]))
    ]


def center_square(image: Image.Image) -> Image.Image:
    """The centred square crop (side = shorter side)."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))


def preprocess_images(
    encoder: VisionEncoder, images: Sequence[Image.Image], pad_to_square: bool = True
) -> Pixels:
    """Pixels for the encoder: its own letterbox preprocessing (LLaVA-1.5's pad-to-square), or
    with ``pad_to_square=False`` a centre crop first (the families' stock processors' resize +
    centre crop). Cropping to a square before ``preprocess`` keeps every family's own
    normalisation, fusions included."""
    if not pad_to_square:
        images = [center_square(im.convert("RGB")) for im in images]
    return encoder.preprocess(images)


@dataclass
class Spliced:
    """Inputs for the LLM after splicing: embeddings, mask, labels (None without labels), and
    per sample the index of the first image token in the output (-1 for text-only samples)."""

    embeds: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None
    image_starts: list[int]


def splice_image_tokens(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    labels: torch.Tensor | None,
    embed: Callable[[torch.Tensor], torch.Tensor],
    image_embeds: torch.Tensor | None,
    image_rows: list[int | None],
    padding_side: str = "right",
) -> Spliced:
    """Replace each sample's ``IMAGE_TOKEN_INDEX`` by its image's tokens and re-pad the batch.

    ``image_rows[b]`` is the row of ``image_embeds`` (n_images, T, d) for sample ``b``, or None
    for a text-only sample. A sample must hold exactly one placeholder if it has an image and
    none otherwise. Padding (``attention_mask`` 0, either side) is dropped and re-added on
    ``padding_side``: "right" for training, "left" for batched generation.
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    text_embeds = embed(input_ids.clamp(min=0))
    rows_out, labels_out, starts = [], [], []
    for b in range(input_ids.shape[0]):
        keep = attention_mask[b].bool()
        ids, emb = input_ids[b][keep], text_embeds[b][keep]
        lab = labels[b][keep] if labels is not None else None
        where = (ids == IMAGE_TOKEN_INDEX).nonzero().flatten().tolist()
        row = image_rows[b]
        if len(where) != (0 if row is None else 1):
            has = "an image" if row is not None else "no image"
            raise ValueError(f"sample {b} has {has} but {len(where)} image placeholders")
        if row is None:
            rows_out.append(emb)
            labels_out.append(lab)
            starts.append(-1)
            continue
        assert image_embeds is not None
        p = where[0]
        image = image_embeds[row].to(emb.dtype)
        rows_out.append(torch.cat([emb[:p], image, emb[p + 1 :]]))
        if lab is not None:
            fill = lab.new_full((image.shape[0],), IGNORE_INDEX)
            labels_out.append(torch.cat([lab[:p], fill, lab[p + 1 :]]))
        starts.append(p)
    length = max(r.shape[0] for r in rows_out)
    batch, width = len(rows_out), text_embeds.shape[-1]
    embeds = text_embeds.new_zeros((batch, length, width))
    mask = attention_mask.new_zeros((batch, length))
    out_labels = None if labels is None else labels.new_full((batch, length), IGNORE_INDEX)
    for b, row in enumerate(rows_out):
        n = row.shape[0]
        lo = 0 if padding_side == "right" else length - n
        embeds[b, lo : lo + n] = row
        mask[b, lo : lo + n] = 1
        if out_labels is not None:
            out_labels[b, lo : lo + n] = labels_out[b]
        if starts[b] >= 0:
            starts[b] += lo
    return Spliced(embeds, mask, out_labels, starts)


def causal_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, per_sample: bool = False
) -> torch.Tensor:
    """Mean next-token cross entropy over target tokens (0, not NaN, when there are none, so a
    batch whose answers were all truncated cannot poison training).

    Only target positions are upcast to fp32 and scored: stage-1 captions are a few dozen of
    several hundred positions, so this saves most of the (positions x vocabulary) fp32 copy.
    ``per_sample``: (B,) mean over each sample's own targets instead of one batch mean.
    """
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE_INDEX
    picked = logits[:, :-1][keep].float()
    losses = nn.functional.cross_entropy(picked, shift_labels[keep], reduction="none")
    if per_sample:
        rows = keep.nonzero()[:, 0]
        sums = losses.new_zeros(labels.shape[0]).index_add(0, rows, losses)
        return sums / keep.sum(dim=1).clamp(min=1)
    return losses.sum() / keep.sum().clamp(min=1)


def continuation_scores(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) summed negative log-likelihood of each sample's target tokens and (B,) whether
    every one of them is the most likely token (lmms-eval's loglikelihood pair)."""
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = labels[:, 1:]
    scored = targets != IGNORE_INDEX
    token_lp = logprobs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = -(token_lp * scored).sum(dim=1)
    greedy = ((logprobs.argmax(dim=-1) == targets) | ~scored).all(dim=1)
    return nll, greedy


class LlavaStyleModel(nn.Module):
    """Encoder (frozen, outside the module tree) + projector + causal LM.

    ``train_encoder``: the encoder's model becomes the submodule ``vision_tower`` (so the
    optimizer, DeepSpeed and ``state_dict`` see it; which of its tensors train is set by
    ``requires_grad``) and image features keep their autograd graph.
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        projector: nn.Module,
        llm: PreTrainedModel,
        train_encoder: bool = False,
    ):
        super().__init__()
        self.encoder = encoder  # not an nn.Module: never partitioned or saved through here
        self.projector = projector
        self.llm = llm
        self.train_encoder = train_encoder
        if train_encoder:
            self.vision_tower = encoder.model

    @property
    def image_tokens(self) -> int:
        rows, cols = self.encoder.grid
        return rows * cols

    # ---- images ------------------------------------------------------------------------------
    def image_features(self, pixel_values: Pixels) -> torch.Tensor:
        """Encoder features (n, T, C). A frozen encoder's ``encode`` runs in inference mode; the
        clone makes an ordinary tensor that autograd may save for the projector's backward."""
        if self.train_encoder:
            return self.encoder.forward_features(pixel_values)
        return self.encoder.encode(pixel_values).clone()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        weight = next(self.projector.parameters())
        return self.projector(features.to(weight.device, weight.dtype))

    def image_embeddings(self, pixel_values: Pixels) -> torch.Tensor:
        """Post-projector image tokens (n, T, d) in the LLM's embedding space (A score v1)."""
        return self.project(self.image_features(pixel_values))

    # ---- text + images -----------------------------------------------------------------------
    def _embed_batch(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None,
        pixel_values: Pixels | None,
        image_mask: torch.Tensor | None,
        padding_side: str,
    ) -> Spliced:
        batch = input_ids.shape[0]
        if image_mask is None:
            image_mask = (input_ids == IMAGE_TOKEN_INDEX).any(dim=1)
        flags = image_mask.bool().tolist()
        rows: list[int | None] = []
        for flag in flags:
            rows.append(sum(r is not None for r in rows) if flag else None)
        image_embeds = None
        if any(flags):
            if pixel_values is None or pixel_rows(pixel_values) != batch:
                raise ValueError("pixel_values must hold one (possibly blank) image per sample")
            keep = image_mask.bool()
            image_embeds = self.image_embeddings(map_pixels(lambda p: p[keep], pixel_values))
        else:
            # Keep the projector in every step's graph (DDP and ZeRO-3 expect the same
            # parameters to take part on every rank), as LLaVA does for text-only batches.
            channels = self.encoder.channels
            weight = next(self.projector.parameters())
            dummy = self.projector(weight.new_zeros((1, channels)))
        embed = self.llm.get_input_embeddings()
        spliced = splice_image_tokens(
            input_ids, attention_mask, labels, embed, image_embeds, rows, padding_side
        )
        if image_embeds is None:
            spliced.embeds = spliced.embeds + 0.0 * dummy.sum().to(spliced.embeds.dtype)
        return spliced

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
        pixel_values: Pixels | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """LLM outputs on the spliced batch; ``loss`` (mean over target tokens) with labels."""
        spliced = self._embed_batch(
            input_ids, attention_mask, labels, pixel_values, image_mask, "right"
        )
        out = self.llm(
            inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, use_cache=False
        )
        result: dict[str, Any] = {"logits": out.logits, "labels": spliced.labels}
        if spliced.labels is not None:
            result["loss"] = causal_lm_loss(out.logits, spliced.labels)
        return result

    @torch.no_grad()
    def sequence_nll(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: Pixels | None = None,
        image_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B,) mean negative log-likelihood of each sample's target tokens (A score v3)."""
        out = self.forward(input_ids, attention_mask, labels, pixel_values, image_mask)
        return causal_lm_loss(out["logits"], out["labels"], per_sample=True)

    @torch.no_grad()
    def score_continuations(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: Pixels | None,
        rows: Sequence[int | None],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:func:`continuation_scores` of a right-padded batch whose samples may share images:
        ``pixel_values`` holds each distinct image once (the options of one question share
        theirs, so it is encoded once) and ``rows[b]`` is sample b's image (None: text only)."""
        device = next(self.llm.parameters()).device
        image_embeds = self.image_embeddings(pixel_values) if pixel_values is not None else None
        spliced = splice_image_tokens(
            input_ids.to(device),
            attention_mask.to(device),
            labels.to(device),
            self.llm.get_input_embeddings(),
            image_embeds,
            list(rows),
            padding_side="right",
        )
        logits = self.llm(
            inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, use_cache=False
        ).logits
        return continuation_scores(logits, spliced.labels)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        pixel_values: Pixels | None = None,
        image_mask: torch.Tensor | None = None,
        **generate_kwargs: Any,
    ) -> torch.Tensor:
        """New token ids (B, n) continuing each prompt (prompts re-padded on the left)."""
        spliced = self._embed_batch(
            input_ids, attention_mask, None, pixel_values, image_mask, "left"
        )
        return self.llm.generate(
            inputs_embeds=spliced.embeds, attention_mask=spliced.attention_mask, **generate_kwargs
        )

    def enable_gradient_checkpointing(self) -> None:
        """Recompute LLM activations in the backward pass (non-reentrant, so gradients reach the
        projector through a frozen LLM in stage 1)."""
        kwargs = {"use_reentrant": False}
        if hasattr(self.llm, "activation_checkpointing_enable"):
            self.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:  # transformers < 5.x
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self.llm.config.use_cache = False
        if self.train_encoder:  # ConvLLaVA: the trained encoder stages too
            self.encoder.enable_gradient_checkpointing()

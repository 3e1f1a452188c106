"""LMVR features: prompt a trained MLLM to describe an image, let it answer, and average the
LLM's hidden states over the resulting sequence.

"Multi-Modal Large Language Models are Effective Vision Learners" (LMVR, WACV 2025) reads an
image-level feature out of the MLLM itself: the published code feeds the prompt with the image,
generates a response, and averages the last layer's hidden states over every position of the
full sequence. Here that is pooling ``all`` at layer ``-1``; ``image`` (the spliced image tokens
only) and ``response`` (the generated tokens only) and any set of layers are offered beside it.

How a batch runs (:func:`describe`):

1. The encoder runs once: its features (the baseline's input) go through the projector.
2. Every image gets the same prompt (``template.prompt(prompt)`` with ``<image>`` first), so the
   spliced prompts have equal length and need no padding; greedy generation continues them.
3. Prompt + response (cut after the first EOS, which is kept) is run through the LLM once more,
   right-padded, with ``output_hidden_states``. Right padding keeps every sample's positions at
   0..n-1, exactly the positions generation used (generation derives them from the mask).

Layers index ``hidden_states`` as Hugging Face returns it: 0 is the embedding output, ``i`` the
output of block ``i``, -1 the last (after the final norm, as in the published code).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from vislaw.vlm.chat_templates import tokenize_prompt
from vislaw.vlm.model import splice_image_tokens

if TYPE_CHECKING:
    from PIL import Image
    from transformers import PreTrainedModel

    from vislaw.vlm.inference import LoadedVlm

POOLING_MODES = ("all", "image", "response")


@dataclass
class Described:
    """One batch: the responses and the hidden states of prompt + response (right-padded)."""

    texts: list[str]
    response_ids: list[list[int]]
    """Generated ids of each sample, up to and including the first EOS."""
    hidden_states: tuple[torch.Tensor, ...]
    """(n_layers + 1) tensors (B, S, d), Hugging Face's ``output_hidden_states``."""
    attentions: tuple[torch.Tensor, ...] | None
    """n_layers tensors (B, heads, S, S) with ``output_attentions``, else None."""
    attention_mask: torch.Tensor
    """(B, S): 1 on each sample's own positions (0..n-1), 0 on the right padding."""
    image_spans: list[tuple[int, int]]
    response_spans: list[tuple[int, int]]
    encoder_features: torch.Tensor
    """(B, T, C) the frozen vision encoder's own tokens (the baseline's input)."""
    grid: tuple[int, int]


def resolve_layer(layer: int, n_hidden: int) -> int:
    """Index into ``hidden_states`` (``n_hidden`` = n_layers + 1 entries), negatives from the
    end; an IndexError names the valid range."""
    index = layer + n_hidden if layer < 0 else layer
    if not 0 <= index < n_hidden:
        raise IndexError(
            f"layer {layer} is outside hidden_states[{-n_hidden}..{n_hidden - 1}] "
            f"(0 = embeddings, {n_hidden - 1} = last block)"
        )
    return index


def attention_index(layer: int, n_layers: int) -> int:
    """Index into ``attentions`` of the block whose output is ``hidden_states[layer]``."""
    index = resolve_layer(layer, n_layers + 1)
    if index == 0:
        raise IndexError("layer 0 is the embedding output; no attention produced it")
    return index - 1


def cut_at_eos(ids: Sequence[int], eos_id: int | None) -> list[int]:
    """The generated ids up to and including the first EOS (all of them without one)."""
    ids = [int(i) for i in ids]
    if eos_id is not None and eos_id in ids:
        return ids[: ids.index(eos_id) + 1]
    return ids


@contextlib.contextmanager
def eager_attention(llm: PreTrainedModel) -> Iterator[None]:
    """Attention weights need the eager kernel (SDPA/flash never materialise them)."""
    previous = getattr(llm.config, "_attn_implementation", None)
    if previous in (None, "eager"):
        yield
        return
    llm.set_attn_implementation("eager")
    try:
        yield
    finally:
        llm.set_attn_implementation(previous)


def _prompt_ids(vlm: LoadedVlm, prompt: str, batch: int) -> torch.Tensor:
    ids = tokenize_prompt(vlm.template, prompt, vlm.tokenizer, has_image=True)
    return torch.tensor([ids] * batch, dtype=torch.long)


@torch.no_grad()
def describe(
    vlm: LoadedVlm,
    images: Sequence[Image.Image],
    prompt: str,
    max_new_tokens: int = 32,
    *,
    min_new_tokens: int = 0,
    responses: Sequence[Sequence[int]] | None = None,
    output_attentions: bool = False,
) -> Described:
    """Generate a response to ``prompt`` for each image (greedy; EOS blocked before
    ``min_new_tokens``) and return the hidden states of prompt + response. With ``responses`` (ids, e.g. from an earlier call) nothing is generated:
    the given responses are run as they are, so attention maps can be taken for exactly the
    answers whose features were stored."""
    model, tokenizer = vlm.model, vlm.tokenizer
    device = next(model.llm.parameters()).device
    embed = model.llm.get_input_embeddings()
    features = model.image_features(vlm.pixels(images))
    image_embeds = model.project(features)
    batch = len(images)
    rows: list[int | None] = list(range(batch))
    prompt_ids = _prompt_ids(vlm, prompt, batch).to(device)
    ones = torch.ones_like(prompt_ids)
    eos = tokenizer.eos_token_id
    if responses is None:
        spliced = splice_image_tokens(prompt_ids, ones, None, embed, image_embeds, rows, "left")
        generated = model.llm.generate(
            inputs_embeds=spliced.embeds,
            attention_mask=spliced.attention_mask,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        )
        responses = [cut_at_eos(row.tolist(), eos) for row in generated]
    else:
        responses = [[int(i) for i in r] for r in responses]
        if len(responses) != batch or any(not r for r in responses):
            raise ValueError(f"need one non-empty response per image ({batch} images)")
    longest = max(len(r) for r in responses)
    width = prompt_ids.shape[1] + longest
    full = torch.full((batch, width), tokenizer.pad_token_id, dtype=torch.long, device=device)
    mask = torch.zeros_like(full)
    full[:, : prompt_ids.shape[1]] = prompt_ids
    mask[:, : prompt_ids.shape[1]] = 1
    for b, response in enumerate(responses):
        end = prompt_ids.shape[1] + len(response)
        full[b, prompt_ids.shape[1] : end] = torch.tensor(response, device=device)
        mask[b, prompt_ids.shape[1] : end] = 1
    spliced = splice_image_tokens(full, mask, None, embed, image_embeds, rows, "right")
    context = eager_attention(model.llm) if output_attentions else contextlib.nullcontext()
    with context:
        out = model.llm(
            inputs_embeds=spliced.embeds,
            attention_mask=spliced.attention_mask,
            output_hidden_states=True,
            output_attentions=output_attentions,
            use_cache=False,
        )
    n_image = image_embeds.shape[1]
    lengths = spliced.attention_mask.sum(dim=1).tolist()
    image_spans = [(s, s + n_image) for s in spliced.image_starts]
    response_spans = [(n - len(r), n) for n, r in zip(lengths, responses, strict=True)]
    texts = [
        tokenizer.decode(r, skip_special_tokens=True).split(vlm.template.stop)[0].strip()
        for r in responses
    ]
    return Described(
        texts=texts,
        response_ids=responses,
        hidden_states=tuple(out.hidden_states),
        attentions=tuple(out.attentions) if output_attentions else None,
        attention_mask=spliced.attention_mask,
        image_spans=image_spans,
        response_spans=response_spans,
        encoder_features=features,
        grid=tuple(model.encoder.grid),
    )


def position_masks(
    attention_mask: torch.Tensor,
    image_spans: Sequence[tuple[int, int]],
    response_spans: Sequence[tuple[int, int]],
) -> dict[str, torch.Tensor]:
    """(B, S) boolean masks of the positions each pooling mode averages over."""
    batch, length = attention_mask.shape
    positions = torch.arange(length, device=attention_mask.device)

    def spans(pairs: Sequence[tuple[int, int]]) -> torch.Tensor:
        lo = torch.tensor([p[0] for p in pairs], device=attention_mask.device)[:, None]
        hi = torch.tensor([p[1] for p in pairs], device=attention_mask.device)[:, None]
        return (positions[None] >= lo) & (positions[None] < hi)

    if len(image_spans) != batch or len(response_spans) != batch:
        raise ValueError(f"need one image and one response span per sample ({batch})")
    return {
        "all": attention_mask.bool(),
        "image": spans(image_spans),
        "response": spans(response_spans),
    }


def variant_names(modes: Sequence[str], layers: Sequence[int]) -> list[str]:
    """Names of the pooled vectors in :func:`pool_hidden_states`' order: ``<mode>@<layer>``."""
    return [f"{mode}@{layer}" for mode in modes for layer in layers]


def pool_hidden_states(
    hidden_states: Sequence[torch.Tensor],
    masks: dict[str, torch.Tensor],
    modes: Sequence[str],
    layers: Sequence[int],
) -> torch.Tensor:
    """(B, len(modes) x len(layers), d) float32 means of the hidden states over each mode's
    positions, mode-major (the order of :func:`variant_names`)."""
    unknown = [m for m in modes if m not in POOLING_MODES]
    if unknown:
        raise ValueError(f"unknown pooling mode(s) {unknown}; known: {list(POOLING_MODES)}")
    pooled = []
    for mode in modes:
        mask = masks[mode]
        count = mask.sum(dim=1, keepdim=True)
        if bool((count == 0).any()):
            raise ValueError(f"pooling '{mode}': a sample has no positions to average")
        for layer in layers:
            hidden = hidden_states[resolve_layer(layer, len(hidden_states))].float()
            kept = torch.where(mask[..., None], hidden, torch.zeros((), dtype=hidden.dtype))
            pooled.append(kept.sum(dim=1) / count.to(hidden.dtype))
    return torch.stack(pooled, dim=1)

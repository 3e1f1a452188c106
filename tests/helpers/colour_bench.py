"""The colour benchmark of the evaluation tests: three coloured squares asked about in a local
multiple-choice set and a generation set, and a tiny stage-2 model overfitted in seconds to name
each colour, so that a correct lmms-eval plugin scores 1.0 (one process or several ranks)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from PIL import Image

from vislaw.eval.local_tasks import DEFAULT_POST_PROMPT
from vislaw.eval.tasks import Benchmark

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220)}
OPTIONS = ["red", "green", "blue", "yellow"]
QUESTION = "What color is the shape in the image?"
MC = Benchmark("vislaw_mc", "vislaw_mc", "acc", local=True)
GEN = Benchmark("vislaw_gen", "vislaw_gen", "exact_match", local=True)


def square(colour: str) -> Image.Image:
    """A non-square canvas filled with the colour (the letterbox pads it)."""
    return Image.new("RGB", (40, 28), COLOURS[colour])


def write_set(folder: Path) -> Path:
    """Three questions; images under images/ (named relative to it, as the demo's sets are);
    the third answer given as a letter."""
    (folder / "images").mkdir(parents=True)
    lines = []
    for i, colour in enumerate(COLOURS):
        square(colour).save(folder / "images" / f"q{i}.png")
        answer = "C" if colour == "blue" else colour
        row = {"question_id": f"q{i}", "image": f"q{i}.png", "question": QUESTION}
        lines.append(json.dumps({**row, "options": OPTIONS, "answer": answer}))
    (folder / "questions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def write_stage2(root: Path) -> Path:
    """A tiny stage-2 folder (tiny CLIP, tiny Llama) under ``root``, overfitted to name each
    square's colour; the ``stage2`` module fixture (helpers.fixtures)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vislaw.encoders.base import EncoderSpec
    from vislaw.encoders.registry import build_encoder
    from vislaw.vlm.chat_templates import (
        GPT,
        HUMAN,
        IGNORE_INDEX,
        Turn,
        get_template,
        tokenize_conversation,
    )
    from vislaw.vlm.checkpoints import VlmInfo, prepare_tokenizer, write_stage
    from vislaw.vlm.model import LlavaStyleModel, preprocess_images
    from vislaw.vlm.projector import build_projector
    from vislaw.vlm.random_llm import write_tiny_llm

    texts = [QUESTION, DEFAULT_POST_PROMPT, *(f"The shape is {o}." for o in OPTIONS)] * 3
    llm_dir = write_tiny_llm(texts, root / "llm0", seed=0)
    # seeded as a config entry named clip_tiny resolves (the released-checkpoint test rebuilds it)
    from vislaw.encoders.registry import encoder_seed

    seed = encoder_seed(0, "clip_tiny")
    spec = EncoderSpec("clip_tiny", "clip", input_size=28, tiny={}, patch_size=14, seed=seed)
    encoder = build_encoder(spec)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(llm_dir))
    torch.manual_seed(0)
    projector = build_projector("mlp2x_gelu", encoder.channels, llm.config.hidden_size)
    model = LlavaStyleModel(encoder, projector, llm).train()
    template = get_template("vicuna_v1")
    prompt = f"<image>\n{QUESTION}{DEFAULT_POST_PROMPT}"
    encoded = [
        tokenize_conversation(template, [Turn(HUMAN, prompt), Turn(GPT, c)], tokenizer, True)
        for c in COLOURS
    ]
    length = max(len(ids) for ids, _ in encoded)
    ids = torch.full((len(encoded), length), tokenizer.pad_token_id)
    labels = torch.full((len(encoded), length), IGNORE_INDEX)
    mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for b, (row_ids, row_labels) in enumerate(encoded):
        ids[b, : len(row_ids)], labels[b, : len(row_ids)] = map(torch.tensor, (row_ids, row_labels))
        mask[b, : len(row_ids)] = 1
    pixels = preprocess_images(encoder, [square(c) for c in COLOURS])
    optimizer = torch.optim.Adam([*projector.parameters(), *llm.parameters()], lr=3e-3)
    for _ in range(60):
        loss = model(ids, mask, labels, pixels)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1, f"the tiny model did not fit its three answers (loss {loss.item()})"
    info = VlmInfo.of_parts(
        2, spec, encoder, llm, projector_type="mlp2x_gelu", template="vicuna_v1"
    )
    return write_stage(root / "stage2", info, projector.state_dict(), llm.eval(), tokenizer)

"""One encoder's LMVR job: load its stage-2 model once, then for the clean images and every
corrupted copy write the LMVR features and the encoder's own pooled features (HDF5), the
responses, and the token maps of a few clean images.

Everything the model computes for a batch serves both feature sets: the encoder runs once, its
tokens are mean-pooled for the baseline and projected for the MLLM. Each corrupted copy gets its
own response (the model describes what it sees), as the clean image does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from vislaw.config import ConfigError
from vislaw.data.imagefolder import LabelledImage, class_names, list_image_folder
from vislaw.io.atomic import write_csv, write_text_atomic
from vislaw.io.hdf5 import write_features
from vislaw.layout import LMVR_MAPS_INDEX, LMVR_RESPONSES
from vislaw.lmvr.corruptions import CLEAN, condition_name, corrupt, image_seed
from vislaw.lmvr.features import (
    attention_index,
    describe,
    pool_hidden_states,
    position_masks,
    resolve_layer,
    variant_names,
)
from vislaw.lmvr.maps import render_panel, safe_name, select_words, token_image_similarity
from vislaw.lmvr.maps import word_tokens as find_words
from vislaw.lmvr.settings import LmvrSettings, feature_file

if TYPE_CHECKING:
    from PIL import Image

    from vislaw.vlm.inference import LoadedVlm

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
MAP_COLUMNS = (
    "image",
    "response",
    "word",
    "token",
    "similarity",
    "layer",
    "peak_row",
    "peak_col",
    "file",
)


def load_image(item: LabelledImage) -> Image.Image:
    """The item's image as RGB, decoded and checked as check_data checks images
    (vislaw.data.images.read_rgb: empty, truncated, oversized, unsupported format)."""
    from vislaw.data.images import read_rgb

    return read_rgb(item.path, item.id)


def check_layers(settings: LmvrSettings, n_layers: int) -> None:
    """ConfigErrors naming lmvr.layers / lmvr.maps.layer for layers the LLM does not have."""
    for key, layers in (
        ("lmvr.layers", settings.layers),
        ("lmvr.maps.layer", [settings.maps.layer]),
    ):
        for layer in layers:
            try:
                resolve_layer(layer, n_layers + 1)
            except IndexError as err:
                raise ConfigError(key, str(err)) from err
    if "attention" in settings.maps.similarity:
        try:
            attention_index(settings.maps.layer, n_layers)
        except IndexError as err:
            raise ConfigError("lmvr.maps.layer", str(err)) from err


def map_images(items: Sequence[LabelledImage], n: int) -> list[LabelledImage]:
    """``n`` images taking the classes in turn (first image of each class, then the second...)."""
    by_class: dict[str, list[LabelledImage]] = {}
    for item in items:
        by_class.setdefault(item.label, []).append(item)
    order = []
    for k in range(max((len(v) for v in by_class.values()), default=0)):
        order += [v[k] for v in by_class.values() if k < len(v)]
    return order[:n]


def extract_condition(
    vlm: LoadedVlm,
    items: Sequence[LabelledImage],
    corruption: str,
    severity: int,
    settings: LmvrSettings,
    lmvr_path: Path,
    baseline_path: Path,
    meta: dict[str, Any],
) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Write both feature files of one condition; returns each image's response ids and
    text, by image id."""
    width = int(vlm.model.llm.config.hidden_size)
    variants = variant_names(settings.pooling, settings.layers)
    name = condition_name(corruption, severity)
    common = {**meta, "condition": name, "corruption": corruption, "severity": severity}
    responses: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    with (
        write_features(
            lmvr_path,
            len(items),
            len(variants),
            width,
            dtype="float32",
            meta={**common, "variants": variants, "pooling": list(settings.pooling)},
        ) as lmvr_writer,
        write_features(
            baseline_path,
            len(items),
            1,
            vlm.model.encoder.channels,
            dtype="float32",
            meta={**common, "pooling": "mean of the encoder's tokens"},
        ) as base_writer,
    ):
        step = settings.batch_size
        for start in tqdm(range(0, len(items), step), desc=f"lmvr {name}"):
            batch = items[start : start + step]
            images = [
                corrupt(
                    load_image(it),
                    corruption,
                    severity,
                    image_seed(settings.seed, it.id, corruption, severity),
                )
                for it in batch
            ]
            out = describe(
                vlm,
                images,
                settings.prompt,
                settings.max_new_tokens,
                min_new_tokens=settings.min_new_tokens,
            )
            masks = position_masks(out.attention_mask, out.image_spans, out.response_spans)
            pooled = pool_hidden_states(out.hidden_states, masks, settings.pooling, settings.layers)
            ids = [it.id for it in batch]
            lmvr_writer.append(ids, pooled.cpu().numpy())
            base = out.encoder_features.float().mean(dim=1, keepdim=True)
            base_writer.append(ids, base.cpu().numpy())
            for it, response, text in zip(batch, out.response_ids, out.texts, strict=True):
                responses[it.id] = response
                texts[it.id] = text
    return responses, texts


def write_maps(
    vlm: LoadedVlm,
    items: Sequence[LabelledImage],
    responses: dict[str, list[int]],
    settings: LmvrSettings,
    out_dir: Path,
) -> list[dict[str, Any]]:
    """PNG panels (image | overlay) for the chosen words of each map image, and their index."""
    maps = settings.maps
    rows = []
    for item in tqdm(map_images(items, maps.n_images), desc="maps"):
        image = load_image(item)
        out = describe(
            vlm,
            [image],
            settings.prompt,
            responses=[responses[item.id]],
            output_attentions="attention" in maps.similarity,
        )
        words = select_words(
            find_words(vlm.tokenizer, out.response_ids[0]), maps.words, maps.first_words
        )
        for k, word in enumerate(words):
            for kind in maps.similarity:
                values = token_image_similarity(out, 0, word.token, maps.layer, kind)
                peak_row, peak_col = np.unravel_index(int(np.argmax(values)), values.shape)
                file = f"{safe_name(item.id.rsplit('.', 1)[0])}_{k:02d}_{safe_name(word.word)}_{kind}.png"
                lines = [
                    f"{item.id}: '{word.word}' (token {word.token}), {kind}, layer {maps.layer}",
                    f"response: {out.texts[0]}",
                ]
                render_panel(image, values, size=maps.size, lines=lines).save(out_dir / file)
                rows.append(
                    {
                        "image": item.id,
                        "response": out.texts[0],
                        "word": word.word,
                        "token": word.token,
                        "similarity": kind,
                        "layer": maps.layer,
                        "peak_row": int(peak_row),
                        "peak_col": int(peak_col),
                        "file": file,
                    }
                )
    write_csv(out_dir / LMVR_MAPS_INDEX, rows, MAP_COLUMNS)
    return rows


def extract_encoder(
    stage2_dir: str | Path,
    image_folder: str | Path,
    settings: LmvrSettings,
    features_dir: str | Path,
    maps_dir: str | Path,
    *,
    device: str = "cpu",
) -> dict[str, Any]:
    """The whole per-encoder job (layout: vislaw.lmvr.settings). Returns a summary."""
    from vislaw.io.atomic import atomic_dir
    from vislaw.vlm.inference import load_vlm

    items = list_image_folder(image_folder)
    vlm = load_vlm(stage2_dir, device=device, dtype=DTYPES[settings.dtype])
    check_layers(settings, int(vlm.model.llm.config.num_hidden_layers))
    features_dir = Path(features_dir)
    meta = {
        "encoder": vlm.info.encoder.name,
        "stage2": str(stage2_dir),
        "image_folder": str(image_folder),
        "classes": class_names(items),
        "prompt": settings.prompt,
        "max_new_tokens": settings.max_new_tokens,
        "min_new_tokens": settings.min_new_tokens,
        "template": vlm.info.template,
    }
    clean_responses: dict[str, list[int]] = {}
    lines = []
    for corruption, severity in settings.conditions:
        name = condition_name(corruption, severity)
        responses, texts = extract_condition(
            vlm,
            items,
            corruption,
            severity,
            settings,
            feature_file(features_dir, "lmvr", name),
            feature_file(features_dir, "baseline", name),
            meta,
        )
        lines += [
            json.dumps({"id": it.id, "condition": name, "response": texts[it.id]}) for it in items
        ]
        if corruption == CLEAN:
            clean_responses = responses
    write_text_atomic(features_dir / LMVR_RESPONSES, "\n".join(lines) + "\n")
    with atomic_dir(maps_dir) as tmp:
        map_rows = write_maps(vlm, items, clean_responses, settings, Path(tmp))
    return {"images": len(items), "conditions": len(settings.conditions), "maps": len(map_rows)}

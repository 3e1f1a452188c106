"""LMVR: hidden-state pooling (by hand and against unpadded single-sample forwards of a tiny
MLLM), the corruptions, the probe (split, determinism, protocols), token maps (word tokens and
the token-grid-to-pixel geometry), the per-encoder job end to end, settings and the rules."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from helpers.paths import ROOT
from vislaw.config import ConfigError, check_config
from vislaw.data.imagefolder import list_image_folder, write_shape_folder
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder
from vislaw.io.hdf5 import read_features
from vislaw.lmvr.corruptions import (
    CORRUPTIONS,
    condition_name,
    conditions,
    corrupt,
    image_seed,
)
from vislaw.lmvr.extract import check_layers, extract_encoder, map_images
from vislaw.lmvr.features import (
    attention_index,
    cut_at_eos,
    describe,
    pool_hidden_states,
    position_masks,
    resolve_layer,
    variant_names,
)
from vislaw.lmvr.maps import (
    grid_to_pixels,
    render_panel,
    select_words,
    token_image_similarity,
    word_tokens,
)
from vislaw.lmvr.probe import (
    PROBE_COLUMNS,
    encoder_rows,
    fit_probe,
    labels_of,
    probe_accuracies,
    stratified_split,
    write_probe_csv,
)
from vislaw.lmvr.settings import (
    LmvrSettings,
    ProbeSettings,
    image_folder,
    lmvr_settings,
    require_image_folder,
)
from vislaw.lmvr.steps import run_lmvr_probe
from vislaw.vlm.chat_templates import IMAGE_TOKEN_INDEX, tokenize_prompt
from vislaw.vlm.checkpoints import VlmInfo, write_stage
from vislaw.vlm.inference import load_vlm
from vislaw.vlm.projector import build_projector
from vislaw.vlm.random_llm import write_tiny_llm

SPEC = EncoderSpec("clip_t", "clip", input_size=56, tiny={}, patch_size=14)  # 4x4 grid
TEXTS = [
    "a red square on a white background",
    "Describe the image briefly. A blue circle at the top left.",
    "a green triangle at the bottom right",
] * 3
PROMPT = "Describe the image briefly."


def lmvr_config(**values) -> LmvrSettings:
    """LMVR settings with these keys, the schema's defaults for the others (seed 0)."""
    return LmvrSettings.from_values(values, seed=0)


# ---- fixtures: a tiny stage-2 folder and a small labelled set ------------------------------------
@pytest.fixture(scope="module")
def stage2(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lmvr")
    llm_dir = write_tiny_llm(TEXTS, root / "llm", seed=0)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    encoder = build_encoder(SPEC)
    torch.manual_seed(0)
    projector = build_projector("mlp2x_gelu", encoder.channels, llm.config.hidden_size)
    info = VlmInfo.of_parts(
        2, SPEC, encoder, llm, projector_type="mlp2x_gelu", template="vicuna_v1"
    )
    folder = root / "stage2"
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    return write_stage(folder, info, projector.state_dict(), llm, tokenizer)


@pytest.fixture(scope="module")
def vlm(stage2):
    return load_vlm(stage2)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images") / "set"
    write_shape_folder(root, ("circle", "square"), per_class=4, image_size=40, seed=0)
    return root


def _canvas(width: int = 40, height: int = 28, seed: int = 0) -> Image.Image:
    """A textured non-square picture (so blur and JPEG have something to destroy)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(height // 4, width // 4, 3), dtype=np.uint8)
    image = Image.fromarray(base).resize((width, height), Image.Resampling.NEAREST)
    return image


# ---- pooling -----------------------------------------------------------------------------------
def test_pooling_by_hand():
    # hidden_states[l][b, s] = (100 l + s, b): every mean is arithmetic on positions.
    batch, length = 2, 6
    hidden = tuple(
        torch.stack(
            [
                torch.stack(
                    [
                        torch.full((length,), 100.0 * layer) + torch.arange(length),
                        torch.full((length,), float(b)),
                    ],
                    dim=-1,
                )
                for b in range(batch)
            ]
        )
        for layer in range(3)
    )
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    masks = position_masks(mask, image_spans=[(1, 3), (0, 2)], response_spans=[(4, 6), (3, 4)])
    pooled = pool_hidden_states(hidden, masks, ["all", "image", "response"], [-1, 1])
    assert pooled.shape == (2, 6, 2)
    assert variant_names(["all", "image", "response"], [-1, 1]) == [
        "all@-1",
        "all@1",
        "image@-1",
        "image@1",
        "response@-1",
        "response@1",
    ]
    expected_first = [200 + 2.5, 100 + 2.5, 200 + 1.5, 100 + 1.5, 200 + 4.5, 100 + 4.5]
    expected_second = [200 + 1.5, 100 + 1.5, 200 + 0.5, 100 + 0.5, 200 + 3.0, 100 + 3.0]
    torch.testing.assert_close(pooled[0, :, 0], torch.tensor(expected_first))
    torch.testing.assert_close(pooled[1, :, 0], torch.tensor(expected_second))
    torch.testing.assert_close(pooled[:, :, 1], torch.tensor([[0.0] * 6, [1.0] * 6]))
    # Padding holding inf/nan must not leak into the means.
    poisoned = tuple(h.clone() for h in hidden)
    poisoned[2][1, 4:] = float("nan")
    torch.testing.assert_close(pool_hidden_states(poisoned, masks, ["all"], [2]), pooled[:, :1])


def test_layer_indexing():
    assert resolve_layer(-1, 3) == 2 and resolve_layer(0, 3) == 0
    with pytest.raises(IndexError, match="outside"):
        resolve_layer(3, 3)
    assert attention_index(-1, 2) == 1 and attention_index(1, 2) == 0
    with pytest.raises(IndexError, match="embedding"):
        attention_index(0, 2)
    assert cut_at_eos([5, 6, 2, 0, 0], 2) == [5, 6, 2] and cut_at_eos([5, 6], 2) == [5, 6]
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_hidden_states((torch.zeros(1, 2, 3),), {}, ["mean"], [0])


def _single_forward(vlm, image, response):
    """Hidden states of one sample built by hand: prompt with the image tokens at the
    placeholder, then the response; no padding, no batching."""
    model = vlm.model
    ids = tokenize_prompt(vlm.template, PROMPT, vlm.tokenizer, has_image=True)
    p = ids.index(IMAGE_TOKEN_INDEX)
    embed = model.llm.get_input_embeddings()
    with torch.no_grad():
        image_tokens = model.image_embeddings(vlm.pixels([image]))[0]
        parts = [
            embed(torch.tensor(ids[:p])),
            image_tokens,
            embed(torch.tensor(ids[p + 1 :] + list(response))),
        ]
        embeds = torch.cat(parts)[None]
        out = model.llm(inputs_embeds=embeds, output_hidden_states=True)
    return out.hidden_states, p, image_tokens.shape[0]


def test_pooling_matches_unpadded_single_forwards(vlm):
    images = [_canvas(seed=1), _canvas(36, 44, seed=2)]
    responses = [[5, 9, 11, 2], [7, 2]]  # different lengths: the batch is right-padded
    out = describe(vlm, images, PROMPT, responses=responses)
    masks = position_masks(out.attention_mask, out.image_spans, out.response_spans)
    layers = [-1, 0, 1]
    pooled = pool_hidden_states(out.hidden_states, masks, ["all", "image", "response"], layers)
    for b, (image, response) in enumerate(zip(images, responses, strict=True)):
        hidden, p, n_image = _single_forward(vlm, image, response)
        n = hidden[0].shape[1]
        assert out.image_spans[b] == (p, p + n_image)
        assert out.response_spans[b] == (n - len(response), n)
        k = 0
        for positions in (slice(0, n), slice(p, p + n_image), slice(n - len(response), n)):
            for layer in layers:
                expected = hidden[layer][0, positions].mean(dim=0)
                torch.testing.assert_close(pooled[b, k], expected, atol=1e-5, rtol=1e-4)
                k += 1


def test_generated_responses_match_the_models_own_answers(vlm):
    images = [_canvas(seed=3), _canvas(seed=4)]
    out = describe(vlm, images, PROMPT, max_new_tokens=5)
    assert out.texts == vlm.answer([PROMPT] * 2, images, max_new_tokens=5)
    eos = vlm.tokenizer.eos_token_id
    for ids in out.response_ids:
        assert 1 <= len(ids) <= 5 and eos not in ids[:-1]
    forced = describe(vlm, images, PROMPT, max_new_tokens=6, min_new_tokens=6)
    assert all(len(ids) == 6 for ids in forced.response_ids)
    # The encoder's own tokens are returned for the baseline.
    direct = vlm.model.encoder.encode(vlm.pixels(images))
    torch.testing.assert_close(out.encoder_features, direct)


# ---- corruptions -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corruption_severity_zero_is_identity_and_distortion_grows(name):
    image = _canvas(96, 64)
    clean = np.asarray(image, dtype=np.float64)
    same = corrupt(image, name, 0)
    assert same is not image and np.array_equal(np.asarray(same), clean)
    errors = []
    for severity in range(1, 6):
        out = corrupt(image, name, severity, seed=[0, 1])
        assert out.size == image.size and out.mode == "RGB"
        errors.append(np.abs(np.asarray(out, dtype=np.float64) - clean).mean())
    assert errors[0] > 0
    assert (np.diff(errors) > 0).all(), errors
    again = [corrupt(image, name, 3, seed=[0, 1]), corrupt(image, name, 3, seed=[0, 1])]
    assert np.array_equal(np.asarray(again[0]), np.asarray(again[1]))


def test_noise_is_seeded_per_image():
    image = _canvas()
    a = np.asarray(corrupt(image, "gaussian_noise", 2, seed=image_seed(0, "a.png", "x", 2)))
    b = np.asarray(corrupt(image, "gaussian_noise", 2, seed=image_seed(0, "b.png", "x", 2)))
    c = np.asarray(corrupt(image, "gaussian_noise", 2, seed=image_seed(0, "a.png", "x", 2)))
    assert not np.array_equal(a, b) and np.array_equal(a, c)
    assert image_seed(0, "a.png", "x", 2) == image_seed(0, "a.png", "x", 2)  # not salted


def test_corruption_errors_and_conditions():
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(_canvas(), "fog", 1)
    with pytest.raises(ValueError, match="0..5"):
        corrupt(_canvas(), "jpeg", 6)
    assert conditions({"jpeg": [3, 1], "gaussian_blur": [2]}) == [
        ("clean", 0),
        ("jpeg", 1),
        ("jpeg", 3),
        ("gaussian_blur", 2),
    ]
    assert condition_name("clean", 0) == "clean" and condition_name("jpeg", 3) == "jpeg-3"


# ---- probe -------------------------------------------------------------------------------------
def _blobs(n_per_class: int = 12, dims: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = ["a"] * n_per_class + ["b"] * n_per_class + ["c"] * n_per_class
    centres = {"a": 4.0, "b": 0.0, "c": -4.0}
    x = np.stack([rng.normal(centres[y], 0.3, size=dims) for y in labels])
    x[:, 1:] += rng.normal(0, 1, size=(len(labels), dims - 1))  # nuisance dimensions
    return x, labels


def test_split_is_stratified_seeded_and_disjoint():
    labels = ["a"] * 10 + ["b"] * 7
    train, test = stratified_split(labels, 0.3, seed=0)
    assert set(train).isdisjoint(test) and len(train) + len(test) == 17
    assert [labels[i] for i in test].count("a") == 3 and [labels[i] for i in test].count("b") == 2
    again = stratified_split(labels, 0.3, seed=0)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.3, seed=1)[1], test)
    with pytest.raises(ValueError, match="needs >= 2"):
        stratified_split(["a", "a", "b"], 0.3, seed=0)


def test_probe_learns_a_separable_set_and_is_deterministic():
    x, labels = _blobs()
    settings = ProbeSettings.from_values({"test_fraction": 0.25, "seed": 0})
    clean = probe_accuracies({("clean", 0): x}, labels, settings)
    assert clean == {("clean", 0): 1.0}
    noisy = x + np.random.default_rng(1).normal(0, 1, x.shape)
    shuffled = x[np.random.default_rng(2).permutation(len(x))]
    first = probe_accuracies(
        {("clean", 0): x, ("noise", 1): noisy, ("shuffle", 1): shuffled}, labels, settings
    )
    second = probe_accuracies(
        {("clean", 0): x, ("noise", 1): noisy, ("shuffle", 1): shuffled}, labels, settings
    )
    assert first == second
    assert first[("shuffle", 1)] < 0.7
    probe = fit_probe(x, labels, settings)
    assert probe.accuracy(x, labels) == 1.0


def test_probe_protocols_differ_as_documented():
    x, labels = _blobs()
    flipped = -x  # a class's clean direction now points at another class
    data = {("clean", 0): x, ("flip", 1): flipped}
    on_clean = probe_accuracies(data, labels, ProbeSettings.from_values({"train_on": "clean"}))
    on_same = probe_accuracies(data, labels, ProbeSettings.from_values({"train_on": "same"}))
    assert on_clean[("flip", 1)] < 0.5 and on_same[("flip", 1)] == 1.0
    with pytest.raises(ValueError, match="clean features"):
        probe_accuracies({("flip", 1): x}, labels, ProbeSettings.from_values())


# ---- maps --------------------------------------------------------------------------------------
def _hot(rows: int, cols: int, r: int, c: int) -> np.ndarray:
    values = np.zeros((rows, cols))
    values[r, c] = 1.0
    return values


def test_grid_cell_maps_onto_its_letterboxed_pixels():
    # 60x40: square side 60, 10 px of padding above and below; 4x4 cells of 15 px.
    heat = grid_to_pixels(_hot(4, 4, 1, 2), 60, 40, mode="nearest")
    assert heat.shape == (40, 60)
    ys, xs = np.nonzero(heat)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (30, 44, 5, 19)
    # 40x60 (tall): padding left and right; cell (2, 0) covers x in [-10, 5), y in [30, 45).
    ys, xs = np.nonzero(grid_to_pixels(_hot(4, 4, 2, 0), 40, 60, mode="nearest"))
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (0, 4, 30, 44)
    # 80x20: rows 0 and 3 are pure padding and never reach a pixel.
    index = np.arange(16, dtype=float).reshape(4, 4)
    seen = set(np.unique(grid_to_pixels(index, 80, 20, mode="nearest")).astype(int))
    assert seen == set(range(4, 12))


def test_bilinear_map_peaks_at_the_cell_centre_and_is_size_invariant():
    heat = grid_to_pixels(_hot(4, 4, 1, 2), 60, 40)
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    assert (x, y) in {(37, 12), (37, 11), (36, 12), (36, 11)}  # centre (37.5, 12.5) - 0.5
    assert heat.min() >= 0 and heat.max() <= 1
    # The same cell at an encoder input size other than the image side: same pixels.
    np.testing.assert_allclose(grid_to_pixels(_hot(4, 4, 1, 2), 60, 40, size=224), heat)


def test_word_tokens_point_at_each_words_first_sub_token(vlm):
    tok = vlm.tokenizer
    text = "A zebra quokka sits, the red square."
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    words = word_tokens(tok, ids)
    assert [w.word for w in words] == ["A", "zebra", "quokka", "sits", "the", "red", "square"]
    assert len(ids) - 1 > len(words)  # some words span several tokens
    for w in words:
        before = tok.decode(ids[: w.token], skip_special_tokens=True)
        through = tok.decode(ids[: w.token + 1], skip_special_tokens=True)
        assert len(before) <= w.char_start < len(through)
    chosen = select_words(words, wanted=["SQUARE", "a", "missing"], first=2)
    assert [w.word for w in chosen] == ["A", "zebra", "square"]


def test_token_image_similarity_and_panel(vlm):
    image = _canvas(40, 28)
    kernel = vlm.model.llm.config._attn_implementation
    out = describe(vlm, [image], PROMPT, responses=[[5, 9, 2]], output_attentions=True)
    assert vlm.model.llm.config._attn_implementation == kernel  # the eager switch is undone
    rows, cols = out.grid
    attention = token_image_similarity(out, 0, 1, -1, "attention")
    cosine = token_image_similarity(out, 0, 1, -1, "cosine")
    assert attention.shape == cosine.shape == (rows, cols)
    assert attention.min() >= 0 and attention.sum() <= 1 + 1e-6
    h = out.hidden_states[-1][0]
    start = out.image_spans[0][0]
    query = out.response_spans[0][0] + 1
    expected = torch.nn.functional.cosine_similarity(h[start], h[query], dim=0).item()
    assert cosine[0, 0] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(IndexError):
        token_image_similarity(out, 0, 3, -1, "cosine")
    panel = render_panel(image, cosine, size=120, lines=["a", "b"])
    assert panel.size == (2 * 120 + 4, round(28 * 120 / 40) + 14 * 2 + 6)


# ---- the per-encoder job and the probe table ---------------------------------------------------
def test_shape_folder_is_seeded_and_listed(tmp_path, shapes):
    items = list_image_folder(shapes)
    assert [i.id for i in items][:2] == ["circle/0000.png", "circle/0001.png"]
    assert labels_of([i.id for i in items]) == [i.label for i in items]
    again = write_shape_folder(tmp_path / "again", ("circle", "square"), 4, 40, seed=0)
    for a, b in zip(items, again, strict=True):
        assert a.path.read_bytes() == b.path.read_bytes()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        write_shape_folder(tmp_path / "foreign", ("circle", "square"), 2, 32)
    (tmp_path / "one" / "a").mkdir(parents=True)
    with pytest.raises(ValueError, match="class folder"):
        list_image_folder(tmp_path / "one")
    assert [i.label for i in map_images(items, 3)] == ["circle", "square", "circle"]


def test_extract_encoder_and_probe_rows(stage2, shapes, tmp_path):
    settings = lmvr_config(
        encoders=["clip_t"],
        prompt=PROMPT,
        max_new_tokens=4,
        min_new_tokens=4,
        batch_size=3,
        pooling=["all", "response"],
        layers=[-1, 1],
        corruptions={"jpeg": [2]},
        probe={"test_fraction": 0.25},
        maps={"similarity": ["attention", "cosine"], "first_words": 1, "n_images": 2, "size": 64},
    )
    features = tmp_path / "features" / "clip_t"
    maps = tmp_path / "maps" / "clip_t"
    summary = extract_encoder(stage2, shapes, settings, features, maps)
    assert summary["images"] == 8 and summary["conditions"] == 2
    items = list_image_folder(shapes)
    for condition in ("clean", "jpeg-2"):
        lmvr = read_features(features / "lmvr" / f"{condition}.h5")
        base = read_features(features / "baseline" / f"{condition}.h5")
        assert lmvr.ids == base.ids == [i.id for i in items]
        assert lmvr.features.shape == (8, 4, 64) and base.features.shape == (8, 1, 32)
        assert lmvr.meta["variants"] == ["all@-1", "all@1", "response@-1", "response@1"]
        assert lmvr.meta["condition"] == condition and np.isfinite(lmvr.features).all()
    vlm = load_vlm(stage2)
    clean_images = [Image.open(i.path).convert("RGB") for i in items[:3]]
    direct = vlm.model.encoder.encode(vlm.pixels(clean_images)).mean(dim=1).numpy()
    stored = read_features(features / "baseline" / "clean.h5").features[:3, 0]
    np.testing.assert_allclose(stored, direct, rtol=1e-5, atol=1e-6)
    jpeg = read_features(features / "baseline" / "jpeg-2.h5").features
    assert not np.allclose(jpeg, read_features(features / "baseline" / "clean.h5").features)
    lines = (features / "responses.jsonl").read_text().splitlines()
    assert len(lines) == 16 and json.loads(lines[0])["condition"] == "clean"
    index = list(csv.DictReader((maps / "index.csv").open()))
    assert len(index) == 2 * 2  # two images, one word each, two similarities
    for row in index:
        assert (maps / row["file"]).is_file() and row["similarity"] in ("attention", "cosine")
    rows = encoder_rows(
        "clip_t", features, settings.conditions, settings.condition_names, settings.probe
    )
    assert len(rows) == (1 + 4) * 2
    assert rows[0]["features"] == "baseline" and rows[2]["features"] == "lmvr_all@-1"
    assert all(0 <= r["accuracy"] <= 1 for r in rows)
    again = encoder_rows(
        "clip_t", features, settings.conditions, settings.condition_names, settings.probe
    )
    assert rows == again
    out = write_probe_csv(rows, tmp_path / "probe.csv")
    with out.open() as handle:
        assert tuple(next(csv.reader(handle))) == PROBE_COLUMNS
    # the rule's step: the same rows for lmvr.encoders, read from <lmvr dir>/features/<encoder>
    assert run_lmvr_probe(settings, tmp_path, tmp_path / "step.csv") == rows
    assert (tmp_path / "step.csv").read_text() == out.read_text()
    # a condition's file copied over another's is refused, naming the file and the field
    shutil.copy(features / "lmvr" / "clean.h5", features / "lmvr" / "jpeg-2.h5")
    with pytest.raises(ValueError, match=r"jpeg-2\.h5: records lmvr\.condition = 'clean'"):
        encoder_rows(
            "clip_t", features, settings.conditions, settings.condition_names, settings.probe
        )


def test_bad_layers_name_their_key(stage2):
    with pytest.raises(ConfigError, match="lmvr.layers"):
        check_layers(lmvr_config(encoders=["x"], layers=[5]), n_layers=2)
    with pytest.raises(ConfigError, match="lmvr.maps.layer"):
        check_layers(lmvr_config(encoders=["x"], maps={"layer": 0}), n_layers=2)


# ---- settings, rules, CLI ----------------------------------------------------------------------
def test_settings_from_config(minimal_config):
    config = check_config({**minimal_config, "lmvr": {"corruptions": {"jpeg": [1]}}})
    settings = lmvr_settings(config)
    assert settings.encoders == ("clip224", "clip_b") and settings.layers == (-1,)
    assert settings.condition_names == ["clean", "jpeg-1"]
    assert image_folder(config) is None
    with pytest.raises(ConfigError, match="lmvr.image_folder"):
        require_image_folder(config)
    config = check_config({**minimal_config, "lmvr": {"image_folder": "imagenet/val"}})
    assert image_folder(config) == Path("data/imagenet/val")
    with pytest.raises(ConfigError, match="lmvr.encoders"):
        lmvr_settings(check_config({**minimal_config, "lmvr": {"encoders": ["nope"]}}))
    with pytest.raises(ConfigError, match="lmvr.min_new_tokens"):
        lmvr_settings(
            check_config({**minimal_config, "lmvr": {"max_new_tokens": 2, "min_new_tokens": 3}})
        )
    with pytest.raises(ConfigError, match="lmvr.corruptions"):
        check_config({**minimal_config, "lmvr": {"corruptions": {"fog": [1]}}})
    demo = lmvr_settings(check_config(yaml.safe_load((ROOT / "config/demo.yaml").read_text())))
    assert len(demo.encoders) == 3 and demo.condition_names[0] == "clean"


def test_dry_run_plans_one_job_per_lmvr_encoder(tmp_path):
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["data"]["root"] = str(tmp_path / "data")
    config["targets"] = ["lmvr"]
    path = tmp_path / "demo.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake = Path(sys.executable).parent / "snakemake"
    result = subprocess.run(
        [str(snakemake), "-n", "--quiet", "rules", "--configfile", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout + result.stderr, re.M))
    assert jobs["lmvr"] == "3" and jobs["lmvr_probe"] == "1" and jobs["lmvr_images"] == "1"
    assert jobs["stage2"] == "3"


def test_cli_help_and_images(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vislaw.lmvr", "extract", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "--encoder" in result.stdout
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["lmvr"]["synthetic"] = {"classes": ["star", "circle"], "per_class": 2, "image_size": 32}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    from vislaw.lmvr.cli import main

    assert main(["images", "--config", str(path), "--out", str(tmp_path / "imgs")]) == 0
    assert [i.label for i in list_image_folder(tmp_path / "imgs")] == ["circle"] * 2 + ["star"] * 2

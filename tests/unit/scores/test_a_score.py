"""Embedding extraction (deterministic, atomic), the image sample, A v3 against a direct
computation, the A table, and the law's input join."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.llava_samples import draw, write_llava_data
from vislaw.data.llava import read_llava_json
from vislaw.eval.local_tasks import write_task_folder
from vislaw.eval.tasks import Benchmark
from vislaw.io.hdf5 import read_features, write_features
from vislaw.law.inputs import build_law_input
from vislaw.scores.a_images import read_sample, sample_lmms_task, sample_local_set, write_sample
from vislaw.scores.a_table import a_score_rows
from vislaw.scores.embeddings import caption_loglik, extract_embeddings, sample_captions
from vislaw.vlm.chat_templates import IGNORE_INDEX, IMAGE_TOKEN_INDEX, tokenize_conversation
from vislaw.vlm.inference import load_vlm
from vislaw.vlm.model import preprocess_images


@pytest.fixture(scope="module")
def image_items(tmp_path_factory) -> list[dict[str, str]]:
    folder = tmp_path_factory.mktemp("imgs")
    items = []
    for i, (colour, shape) in enumerate(
        [("red", "square"), ("blue", "circle"), ("green", "square")]
    ):
        path = folder / f"{i}.png"
        draw(colour, shape).save(path)
        items.append({"id": f"img{i}", "path": str(path)})
    return items


def test_extraction_matches_the_model_and_is_deterministic(stage1, image_items, tmp_path):
    vlm = load_vlm(stage1)
    extract_embeddings(
        vlm, image_items, tmp_path / "a.h5", batch_size=2, dtype="float32", meta={"benchmark": "b"}
    )
    extract_embeddings(
        load_vlm(stage1), image_items, tmp_path / "b.h5", batch_size=3, dtype="float32"
    )
    a, b = read_features(tmp_path / "a.h5"), read_features(tmp_path / "b.h5")
    assert a.ids == ["img0", "img1", "img2"]
    d_llm = vlm.model.llm.config.hidden_size
    assert a.features.shape == (3, vlm.model.image_tokens, d_llm)
    np.testing.assert_allclose(a.features, b.features, atol=1e-6)
    from PIL import Image

    with torch.no_grad():
        direct = vlm.model.image_embeddings(vlm.pixels([Image.open(image_items[1]["path"])]))
    np.testing.assert_allclose(a.features[1], direct[0].numpy(), atol=1e-5)
    assert a.meta == {"benchmark": "b"}


def test_interrupted_extraction_leaves_no_file(stage1, image_items, tmp_path):
    bad = [*image_items, {"id": "gone", "path": str(tmp_path / "missing.png")}]
    with pytest.raises(OSError, match="missing.png"):
        extract_embeddings(load_vlm(stage1), bad, tmp_path / "x.h5", batch_size=2)
    assert not (tmp_path / "x.h5").exists()


def _direct_loglik(vlm, samples, image_folder) -> float:
    """Per sample: log-softmax of the next-token logits at every caption token, averaged."""
    values = []
    for sample in samples:
        ids, labels = tokenize_conversation(vlm.template, sample.turns, vlm.tokenizer, True)
        from PIL import Image

        image = Image.open(Path(image_folder) / sample.image).convert("RGB")
        pixels = preprocess_images(vlm.model.encoder, [image], vlm.info.pad_to_square)
        with torch.no_grad():
            embeds = vlm.model.image_embeddings(pixels)[0]
            table = vlm.model.llm.get_input_embeddings()
            pieces, targets = [], []
            for token, label in zip(ids, labels, strict=True):
                if token == IMAGE_TOKEN_INDEX:
                    pieces.append(embeds)
                    targets += [IGNORE_INDEX] * embeds.shape[0]
                else:
                    pieces.append(table(torch.tensor([token])))
                    targets.append(label)
            logits = vlm.model.llm(inputs_embeds=torch.cat(pieces)[None]).logits[0]
        logp = torch.log_softmax(logits[:-1].float(), dim=-1)
        targets_t = torch.tensor(targets[1:])
        keep = targets_t != IGNORE_INDEX
        values.append(logp[keep].gather(1, targets_t[keep, None]).mean().item())
    return float(np.mean(values))


def test_caption_loglik_equals_direct_computation(stage1, tmp_path):
    data = write_llava_data(tmp_path, n_pretrain=6, n_instruct=1)
    samples = read_llava_json(tmp_path / "pretrain.json")
    vlm = load_vlm(stage1)
    got = caption_loglik(
        vlm, samples[:5], tmp_path / data["pretrain"]["image_folder"], batch_size=2
    )
    expected = _direct_loglik(vlm, samples[:5], tmp_path / "images")
    assert got == pytest.approx(expected, abs=1e-4)
    assert got < 0


def test_caption_sample_is_seeded_and_skips_text_only(tmp_path):
    write_llava_data(tmp_path, n_pretrain=2, n_instruct=12)
    samples = read_llava_json(tmp_path / "instruct.json")
    a = sample_captions(samples, 5, seed=1)
    assert a == sample_captions(samples, 5, seed=1)
    assert all(s.image for s in a) and len(a) == 5
    assert sample_captions(samples, 100, seed=1) == [s for s in samples if s.image]


def _write_set(folder: Path, n: int) -> Path:
    (folder / "images").mkdir(parents=True)
    lines = []
    for i in range(n):
        draw("red", "square").save(folder / "images" / f"q{i}.png")
        row = {
            "question_id": f"q{i}",
            "image": f"q{i}.png",
            "question": "Colour?",
            "options": ["red", "blue"],
            "answer": "red",
        }
        lines.append(json.dumps(row))
    (folder / "questions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_local_sample_is_seeded_and_per_benchmark(tmp_path):
    folder = _write_set(tmp_path / "set", 12)
    a = sample_local_set(folder, "synth_color", 5, seed=0)
    assert a == sample_local_set(folder, "synth_color", 5, seed=0)
    assert len(a) == 5 and len({x["id"] for x in a}) == 5
    assert all(Path(x["path"]).is_file() and x["id"].startswith("images/") for x in a)
    assert a != sample_local_set(folder, "synth_shape", 5, seed=0)
    assert len(sample_local_set(folder, "synth_color", 100, seed=0)) == 12
    write_sample(tmp_path / "s.json", "synth_color", 0, a)
    assert read_sample(tmp_path / "s.json")["items"] == a


def test_lmms_task_sample_goes_through_lmms_eval(tmp_path):
    """The path used for the paper's benchmarks, run on a local task folder."""
    folder = _write_set(tmp_path / "sets" / "vislaw_a", 6)
    write_task_folder(folder, tmp_path / "tasks", "vislaw_a")
    bench = Benchmark("vislaw_a", "vislaw_a", "acc", local=True)
    items = sample_lmms_task(bench, 4, 0, tmp_path / "out", include_path=str(tmp_path / "tasks"))
    assert len(items) == 4
    assert all(Path(i["path"]).is_file() for i in items)


def _write(path, ids, array):
    with write_features(path, len(ids), array.shape[1], array.shape[2], dtype="float32") as w:
        w.append(ids, array)


def test_a_table_uses_each_reference_and_repeats_loglik(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["a", "b"]
    base = rng.normal(size=(2, 3, 4)).astype(np.float32)
    for enc, arr in {"r1": base, "r2": -base, "t": base}.items():
        _write(tmp_path / f"bench-{enc}.h5", ids, arr)
    rows = a_score_rows(
        ["t"],
        ["bench"],
        lambda b, e: tmp_path / f"{b}-{e}.h5",
        {"t": -1.5},
        {"224": "r1", "336": "r2"},
    )
    (row,) = rows
    assert row["a_cosine_224"] == pytest.approx(1.0, abs=1e-6)
    assert row["a_cosine_336"] < 1.0
    assert row["a_cosine"] == pytest.approx((row["a_cosine_224"] + row["a_cosine_336"]) / 2)
    assert row["a_loglik"] == -1.5


def test_law_input_joins_primary_metric(tmp_path):
    pd.DataFrame(
        {
            "encoder": ["e1", "e2"],
            "benchmark": ["mme", "mme"],
            "a_cosine": [0.5, 0.6],
            "a_cosine_224": [0.5, 0.6],
            "a_cosine_336": [0.5, 0.6],
            "a_loglik": [-2, -1],
        }
    ).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"encoder": ["e1", "e2"], "pck10_image": [0.1, 0.2]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    pd.DataFrame(
        {
            "encoder": ["e1", "e1", "e2", "e2"],
            "benchmark": ["mme"] * 4,
            "task": ["mme"] * 4,
            "metric": ["mme_perception_score", "mme_cognition_score"] * 2,
            "score": [1400, 300, 1500, 310],
        }
    ).to_csv(tmp_path / "b.csv", index=False)
    table = build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "b.csv")
    assert list(table.columns) == ["encoder", "benchmark", "A", "C", "score"]
    assert table["score"].tolist() == [1400, 1500]
    assert table["C"].tolist() == pytest.approx([10.0, 20.0])
    loglik = build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "b.csv", "loglik")
    assert loglik["A"].tolist() == [-2, -1]
    pd.DataFrame({"encoder": ["e1"], "pck10_image": [0.1]}).to_csv(tmp_path / "c.csv", index=False)
    with pytest.raises(ValueError, match="cover every encoder"):
        build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "b.csv")

"""Outputs say what made them, and consumers refuse what the config did not make (issue 22,
scope 2): a features file of another encoder, an edited vlm.json, a bit-flipped projector, a
truncated HDF5 and a word in loss.csv are each refused naming the file (and the key).

Everything is real and small: the demo config's tiny twins on a shrunken synthetic data set,
one optimizer step of stage 1, the step functions called directly (no Snakemake)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from helpers.paths import ROOT
from helpers.run import isolate
from vislaw.data.settings import DataSettings
from vislaw.features import FeaturesSettings, run_features
from vislaw.io.hdf5 import read_features, write_features
from vislaw.io.provenance import InputError, file_sha256, read_json, read_numeric_csv
from vislaw.io.tensors import load_tensors, save_tensors
from vislaw.pipeline import load_checked_config
from vislaw.scores.correspondence.score import inputs_from_config, run_c_score
from vislaw.scores.embeddings import run_embeddings
from vislaw.train.curves import run_training_curves
from vislaw.vlm.checkpoints import PROJECTOR_FILE, VlmInfo
from vislaw.vlm.inference import load_vlm

SMALL_DATA = {
    "image_size": 64,
    "n_pretrain": 8,
    "n_instruct": 8,
    "n_spair_images_per_category": 3,
    "n_spair_pairs_per_category": 3,
    "spair_categories": ["aeroplane", "bird"],
    "n_benchmark_questions": 4,
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """The demo config (clip224, clip336, openclip, dinov2 and their fusion), its synthetic
    data and tiny LLM, under a fresh folder."""
    from vislaw.data.llava import conversation_texts, read_llava_json
    from vislaw.data.synthetic import generate_from_config
    from vislaw.train.settings import llm_source, stage_data
    from vislaw.vlm.random_llm import write_tiny_llm

    tmp = tmp_path_factory.mktemp("prov")
    raw = isolate(yaml.safe_load((ROOT / "config/demo.yaml").read_text()), tmp)
    keep = ("clip224", "clip336", "openclip", "dinov2", "clip224+dinov2")
    raw["encoders"] = {k: raw["encoders"][k] for k in keep}
    raw["train"].pop("recipes", None)
    raw["data"]["synthetic"] = SMALL_DATA
    raw["lmvr"] = {**raw.get("lmvr", {}), "encoders": ["clip224"]}
    config, specs = load_checked_config(raw)
    generate_from_config(config)
    texts = [*conversation_texts(read_llava_json(stage_data(config, 1)[0]))]
    texts += conversation_texts(read_llava_json(stage_data(config, 2)[0]))
    write_tiny_llm(texts, llm_source(config), seed=0)
    return {"config": config, "specs": specs, "tmp": tmp}


def features_of(demo: dict, name: str, folder: Path) -> Path:
    config = demo["config"]
    out = folder / f"{name}.h5"
    run_features(
        FeaturesSettings.from_config(config),
        DataSettings.from_config(config),
        demo["specs"][name],
        out,
    )
    return out


@pytest.fixture(scope="module")
def features(demo) -> dict[str, Path]:
    folder = demo["tmp"] / "features"
    return {name: features_of(demo, name, folder) for name in ("clip224", "openclip")}


def c_score(demo: dict, path: Path, name: str, out: Path, specs: dict | None = None) -> dict:
    config = demo["config"]
    return run_c_score(
        inputs_from_config(config),
        path,
        out,
        encoder=name,
        spec=(specs or demo["specs"])[name],
        features_settings=FeaturesSettings.from_config(config),
    )


# ---- features: a copied file of another encoder, a changed spec, truncated or damaged ---------
def test_features_record_their_settings(features):
    meta = read_features(features["clip224"]).meta
    assert meta["encoder"]["name"] == "clip224"
    assert meta["settings"] == {"image_set": "spair", "max_images": None, "dtype": "float32"}


def test_c_score_refuses_features_of_another_encoder(demo, features, tmp_path):
    row = c_score(demo, features["clip224"], "clip224", tmp_path / "ok.csv")
    assert row["encoder"] == "clip224" and 0.0 <= row["pck10_image"] <= 1.0  # genuine: scored
    assert row["features_sha256"] == file_sha256(features["clip224"])
    copied = tmp_path / "features" / "clip224.h5"
    copied.parent.mkdir()
    shutil.copy(features["openclip"], copied)  # same grid and width: only the record differs
    with pytest.raises(InputError) as err:
        c_score(demo, copied, "clip224", tmp_path / "c.csv")
    assert str(err.value) == f"{copied}: records encoder 'openclip', config wants 'clip224'"
    assert not (tmp_path / "c.csv").exists()


def test_c_scores_table_refuses_a_row_copied_over_another(demo, features, tmp_path):
    from vislaw.scores.correspondence.table import run_c_scores_table

    c_score(demo, features["clip224"], "clip224", tmp_path / "clip224.csv")
    c_score(demo, features["openclip"], "openclip", tmp_path / "openclip.csv")
    run_c_scores_table([tmp_path / "clip224.csv", tmp_path / "openclip.csv"], tmp_path / "t.csv")
    shutil.copy(tmp_path / "clip224.csv", tmp_path / "openclip.csv")
    with pytest.raises(InputError, match=r"openclip\.csv: records encoder 'clip224', as .*clip224"):
        run_c_scores_table(
            [tmp_path / "clip224.csv", tmp_path / "openclip.csv"], tmp_path / "u.csv"
        )


def test_c_score_refuses_features_of_an_older_spec(demo, features, tmp_path):
    """The config's encoder changed since the file was made (layer -2 -> 1): the key is named."""
    import dataclasses

    specs = dict(demo["specs"])
    specs["clip224"] = dataclasses.replace(specs["clip224"], layer=1)
    with pytest.raises(InputError, match=r"clip224\.h5: records encoders\.clip224\.layer = "):
        c_score(demo, features["clip224"], "clip224", tmp_path / "c.csv", specs)


def test_c_score_refuses_features_made_with_other_settings(demo, features, tmp_path):
    config = {**demo["config"], "features": {**demo["config"]["features"], "dtype": "float16"}}
    with pytest.raises(InputError, match=r"records features\.dtype = 'float32', config wants"):
        run_c_score(
            inputs_from_config(config),
            features["clip224"],
            tmp_path / "c.csv",
            spec=demo["specs"]["clip224"],
            features_settings=FeaturesSettings.from_config(config),
        )


def test_features_without_a_settings_record_are_refused(demo, tmp_path):
    from vislaw.io.feature_records import check_features_file

    spec = demo["specs"]["clip224"]
    path = tmp_path / "clip224.h5"
    with write_features(path, 1, 4, 2, meta={"encoder": spec.to_attrs()}) as writer:
        writer.append(["x"], np.zeros((1, 4, 2)))
    check_features_file(path, spec)  # the encoder alone matches
    with pytest.raises(InputError, match=r"clip224\.h5: records no features settings"):
        check_features_file(path, spec, FeaturesSettings.from_config(demo["config"]))


def test_fusion_refuses_swapped_member_files(demo, features, tmp_path):
    from vislaw.features import run_fuse_features

    dinov2 = features_of(demo, "dinov2", tmp_path)
    fusion = demo["specs"]["clip224+dinov2"]
    with pytest.raises(InputError, match=r"dinov2\.h5: records encoder 'dinov2', config wants"):
        run_fuse_features(fusion, [dinov2, features["clip224"]], tmp_path / "fused.h5")
    run_fuse_features(fusion, [features["clip224"], dinov2], tmp_path / "fused.h5")
    assert read_features(tmp_path / "fused.h5").meta["members"] == ["clip224.h5", "dinov2.h5"]


def test_truncated_features_are_refused_naming_the_file(demo, features, tmp_path):
    cut = tmp_path / "clip224.h5"
    data = features["clip224"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"^{cut}: not a readable HDF5 file \(truncated"):
        c_score(demo, cut, "clip224", tmp_path / "c.csv")
    with pytest.raises(InputError, match=str(cut)):
        read_features(cut)


def test_feature_file_without_datasets_is_refused(tmp_path):
    import h5py

    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as handle:
        handle.attrs["meta"] = "{}"
    with pytest.raises(InputError, match=r"empty\.h5: no \['features', 'ids'\] dataset"):
        read_features(path)


def test_damaged_chunk_is_refused_naming_the_file(tmp_path):
    """Bytes overwritten inside the compressed data: h5py's decompression error becomes a
    refusal that names the file."""
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(0)
    with write_features(path, 4, 16, 32, dtype="float32") as writer:
        writer.append(["a", "b", "c", "d"], rng.normal(size=(4, 16, 32)))
    data = bytearray(path.read_bytes())
    start = len(data) // 4
    data[start : start + 4096] = bytes(4096)  # zeros over part of the lzf chunks
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=rf"^{path}: cannot read dataset '/features'"):
        read_features(path)


# ---- stage folders: an edited vlm.json, a bit-flipped projector -------------------------------
@pytest.fixture(scope="module")
def stage1(demo) -> Path:
    """One optimizer step of stage 1 for clip336 (input_size 168): a real stage folder."""
    from vislaw.train.runner import train_stage

    out = demo["tmp"] / "results" / "stage1" / "clip336"
    return train_stage(demo["config"], 1, "clip336", out, max_steps=1)


def copy_stage(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "stage1" / folder.name
    shutil.copytree(folder, target)
    info = VlmInfo.read(folder)
    if info.llm_local:  # keep the LLM reachable from the copy (vlm.json stores it relative)
        llm = Path(info.llm_source(folder))
        data = json.loads((target / "vlm.json").read_text())
        data["llm"] = str(llm)
        data["llm_local"] = False
        (target / "vlm.json").write_text(json.dumps(data))
    return target


def embeddings(demo: dict, folder: Path, out: Path, encoder: str = "clip336") -> None:
    run_embeddings(demo["config"], folder, {}, {}, out / "loglik.json", encoder=encoder)


def test_stage_folder_records_its_projector_checksum(stage1):
    tensors, meta = load_tensors(stage1 / PROJECTOR_FILE)
    assert meta["projector_type"] == "mlp2x_gelu" and len(meta["tensors_sha256"]) == 64
    assert VlmInfo.read(stage1).encoder.input_size == 168


def test_embeddings_refuse_an_edited_vlm_json(demo, stage1, tmp_path):
    folder = copy_stage(stage1, tmp_path)
    data = json.loads((folder / "vlm.json").read_text())
    data["encoder"]["input_size"] = 112
    (folder / "vlm.json").write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        embeddings(demo, folder, tmp_path)
    assert str(err.value) == (
        f"{folder / 'vlm.json'}: records encoders.clip336.input_size = 112, config wants 168"
    )
    with pytest.raises(InputError, match=r"records encoder 'clip336', config wants 'clip224'"):
        embeddings(demo, copy_stage(stage1, tmp_path / "b"), tmp_path, encoder="clip224")


def test_eval_plugin_refuses_an_edited_stage_folder_when_told_its_encoder(demo, stage1, tmp_path):
    from vislaw.eval.plugin import load_model

    folder = copy_stage(stage1, tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(demo["config"]))
    assert load_model(folder, config=config, encoder="clip336").info.encoder.name == "clip336"
    data = json.loads((folder / "vlm.json").read_text())
    data["encoder"]["patch_size"] = 8
    (folder / "vlm.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"records encoders\.clip336\.patch_size = 8, config"):
        load_model(folder, config=config, encoder="clip336")


def test_stage2_refuses_an_edited_stage1(demo, stage1, tmp_path):
    from vislaw.train.runner import train_stage

    folder = copy_stage(stage1, tmp_path)
    data = json.loads((folder / "vlm.json").read_text())
    data["encoder"]["layer"] = 1
    (folder / "vlm.json").write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"vlm\.json: records encoders\.clip336\.layer = 1"):
        train_stage(demo["config"], 2, "clip336", tmp_path / "s2", stage1_dir=folder, max_steps=1)


def flip_bit(path: Path, from_end: int = 3) -> None:
    """Flip the top bit of a byte near the end of the file (tensor data, not the header)."""
    data = bytearray(path.read_bytes())
    data[-from_end] ^= 0x40
    path.write_bytes(bytes(data))


def test_bit_flipped_projector_is_refused(demo, stage1, tmp_path):
    folder = copy_stage(stage1, tmp_path)
    before = {k: v.clone() for k, v in load_tensors(folder / PROJECTOR_FILE)[0].items()}
    flip_bit(folder / PROJECTOR_FILE)
    path = folder / PROJECTOR_FILE
    with pytest.raises(InputError, match=rf"^{path}: tensors do not match the checksum"):
        load_vlm(folder)
    with pytest.raises(InputError, match=str(path)):
        embeddings(demo, folder, tmp_path)
    # the flip is a real change of one value, which the safetensors parser alone accepts
    from safetensors.torch import load_file

    after = load_file(str(path))
    assert sum(int((before[k] != after[k]).sum()) for k in before) == 1


def test_projector_from_another_stage_folder_is_refused(stage1, tmp_path):
    """A projector of the same shapes with its own checksum intact (another run's, written by
    the project's writer), put in place of this folder's: not the one vlm.json records."""
    from vislaw.vlm.checkpoints import save_projector
    from vislaw.vlm.projector import build_projector

    info = VlmInfo.read(stage1)
    folder = copy_stage(stage1, tmp_path)
    torch.manual_seed(1)
    other = build_projector(info.projector_type, info.projector_in, info.projector_out)
    save_projector(other.state_dict(), folder / PROJECTOR_FILE, info.projector_type)
    load_tensors(folder / PROJECTOR_FILE)  # a sound file on its own
    with pytest.raises(InputError, match=rf"^{folder / PROJECTOR_FILE}: is not the file vlm"):
        load_vlm(folder)


def test_truncated_projector_and_corrupt_vlm_json_are_named(stage1, tmp_path):
    folder = copy_stage(stage1, tmp_path)
    data = (folder / PROJECTOR_FILE).read_bytes()
    (folder / PROJECTOR_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"^{folder / PROJECTOR_FILE}: not a readable"):
        load_vlm(folder)
    text = (folder / "vlm.json").read_text()
    (folder / "vlm.json").write_text(text[: len(text) // 2])
    with pytest.raises(InputError, match=rf"^{folder / 'vlm.json'}: not valid JSON"):
        VlmInfo.read(folder)


# ---- CSV with a non-number ---------------------------------------------------------------------
def test_word_in_loss_csv_is_refused_naming_file_and_line(demo, stage1, tmp_path):
    folder = copy_stage(stage1, tmp_path)
    out = tmp_path / "curves.png"
    run_training_curves([folder / "vlm.json"], out)  # the genuine log plots
    assert out.stat().st_size > 0
    loss = folder / "loss.csv"
    lines = loss.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("loss")] = "diverged"
    loss.write_text("\n".join([lines[0], ",".join(row), *lines[2:]]) + "\n")
    with pytest.raises(InputError) as err:
        run_training_curves([folder / "vlm.json"], tmp_path / "bad.png")
    assert str(err.value) == f"{loss}: line 2, column 'loss': 'diverged' is not a number"
    assert not (tmp_path / "bad.png").exists()


# ---- the provenance module on its own ----------------------------------------------------------
def test_tensor_checksum_round_trip_and_missing_checksum(tmp_path):
    tensors = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(0)}
    save_tensors(tensors, tmp_path / "t.safetensors", {"format": "x"})
    got, meta = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(got["w"], tensors["w"]) and meta["format"] == "x"
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "plain.safetensors"))
    with pytest.raises(InputError, match=r"plain\.safetensors: no 'tensors_sha256'"):
        load_tensors(tmp_path / "plain.safetensors")
    assert "w" in load_tensors(tmp_path / "plain.safetensors", require_checksum=False)[0]


def test_numeric_csv_and_json_readers_name_the_file(tmp_path):
    good = tmp_path / "a.csv"
    good.write_text("step,loss\n1,2.5\n2,2.0\n")
    assert read_numeric_csv(good, ["step", "loss"]) == {"step": [1.0, 2.0], "loss": [2.5, 2.0]}
    bad = tmp_path / "b.csv"
    bad.write_text("step,loss\n1,nan\n")
    with pytest.raises(InputError, match=r"b\.csv: line 2, column 'loss': 'nan' is not finite"):
        read_numeric_csv(bad, ["step", "loss"])
    with pytest.raises(InputError, match=r"a\.csv: missing column\(s\) \['lr'\]"):
        read_numeric_csv(good, ["lr"])
    broken = tmp_path / "c.json"
    broken.write_text('{"a": ')
    with pytest.raises(InputError, match=r"c\.json: not valid JSON"):
        read_json(broken)
    assert len(file_sha256(good)) == 64


# ---- the A-score table: copied embeddings and log-likelihood records ---------------------------
def test_a_scores_refuse_a_copied_embedding_file_and_loglik_record(tmp_path):
    from vislaw.scores.a_table import run_a_scores
    from vislaw.scores.settings import AScoreSettings

    rng = np.random.default_rng(0)
    for encoder in ("clip224", "clip336", "dinov2"):  # meta as the embeddings job writes it
        meta = {"encoder": encoder, "benchmark": "synth_color", "checkpoint_sha256": "x"}
        with write_features(tmp_path / f"{encoder}.h5", 2, 3, 4, meta=meta) as writer:
            writer.append(["a", "b"], rng.normal(size=(2, 3, 4)))
        record = {"encoder": encoder, "a_loglik": -1.0}
        (tmp_path / f"{encoder}.json").write_text(json.dumps(record))
    settings = AScoreSettings.from_values({"references": {"224": "clip224", "336": "clip336"}})
    names = ["clip224", "clip336", "dinov2"]

    def table(out: str) -> list:
        return run_a_scores(
            settings,
            names,
            ["synth_color"],
            lambda bench, enc: tmp_path / f"{enc}.h5",
            [tmp_path / f"{n}.json" for n in names],
            tmp_path / out,
        )

    assert len(table("ok.csv")) == 3
    shutil.copy(tmp_path / "clip336.h5", tmp_path / "dinov2.h5")
    with pytest.raises(InputError, match=r"dinov2\.h5: records embeddings\.encoder = 'clip336'"):
        table("bad.csv")
    meta = {"encoder": "dinov2", "benchmark": "synth_color"}
    with write_features(tmp_path / "dinov2.h5", 2, 3, 4, meta=meta) as writer:
        writer.append(["a", "b"], rng.normal(size=(2, 3, 4)))
    shutil.copy(tmp_path / "clip224.json", tmp_path / "dinov2.json")
    with pytest.raises(InputError, match=r"dinov2\.json: records encoder 'clip224', as .*clip224"):
        table("bad.csv")
    assert not (tmp_path / "bad.csv").exists()


# ---- the law's input tables and the training checkpoint ----------------------------------------
def test_law_input_refuses_a_word_in_a_score_table(tmp_path):
    import pandas as pd

    from vislaw.law.inputs import build_law_input

    a = {"encoder": ["e1", "e2"], "benchmark": ["mme"] * 2, "a_cosine": [0.5, 0.6]}
    pd.DataFrame(a).to_csv(tmp_path / "a.csv", index=False)
    b = {
        "encoder": ["e1", "e2"],
        "benchmark": ["mme"] * 2,
        "metric": ["mme_perception_score"] * 2,
        "score": [1400, None],  # not scored: a documented empty cell, left out of the law
        "note": ["", "no judge"],
    }
    pd.DataFrame(b).to_csv(tmp_path / "b.csv", index=False)
    (tmp_path / "c.csv").write_text("encoder,pck10_image\ne1,0.1\ne2,0.2\n")
    table = build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "b.csv")
    assert table["C"].tolist() == pytest.approx([10.0])
    (tmp_path / "c.csv").write_text("encoder,pck10_image\ne1,0.1\ne2,high\n")
    with pytest.raises(InputError) as err:
        build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", tmp_path / "b.csv")
    assert (
        str(err.value)
        == f"{tmp_path / 'c.csv'}: line 3, column 'pck10_image': 'high' is not a number"
    )


def test_resumable_checkpoint_refuses_a_flipped_bit(tmp_path):
    from vislaw.train.engine import PlainEngine

    def engine(seed: int) -> PlainEngine:
        torch.manual_seed(seed)
        model = torch.nn.Linear(4, 3)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        return PlainEngine(model, optimizer, scheduler, 1, 1.0, "cpu", False)

    saved = engine(0)
    saved.save(tmp_path, "step_1", {"step": 1})
    fresh = engine(1)
    assert fresh.load(tmp_path, "step_1") == {"step": 1}
    assert torch.equal(fresh.model.weight, saved.model.weight)
    flip_bit(tmp_path / "step_1" / "trainable.safetensors")
    with pytest.raises(InputError, match=r"step_1/trainable\.safetensors: tensors do not match"):
        engine(1).load(tmp_path, "step_1")

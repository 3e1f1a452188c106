"""Weights are the ones named (issue 22, scope 3): a real checkpoint loads into a family only if
every tensor the model uses comes from it, with its shape, and its model_type is one the family
handles; the refusal names the encoder key, the tensors and, where one exists, the family that
would fit. The checkpoints are tiny models saved with ``save_pretrained`` from the real
architecture classes (AIMv2, MLCD, DINOv2, CLIP, SigLIP, DiT), some then edited tensor by tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers.demo_encoders import DEMO_SPECS, random_images
from helpers.paths import ROOT
from vislaw.config import ConfigError
from vislaw.encoders.registry import build_encoder

VIT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
TEXT = {**VIT, "vocab_size": 64, "max_position_embeddings": 16}


def _real(name: str, folder: Path) -> dataclasses.replace:
    """The demo twin's spec turned into a real-checkpoint spec loading ``folder``."""
    return dataclasses.replace(DEMO_SPECS[name], tiny=None, model_id=str(folder))


def _edit_tensors(folder: Path, edit, filename: str = "model.safetensors") -> None:
    """Rewrite a saved checkpoint's tensors with ``edit(state) -> state``."""
    path = folder / filename
    save_file(edit(load_file(path)), path, metadata={"format": "pt"})


def _save_aimv2(folder: Path) -> None:
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    config = Aimv2VisionConfig(**VIT, patch_size=16, image_size=128)
    Aimv2VisionModel(config).save_pretrained(folder)


# ---- another architecture's checkpoint ---------------------------------------------------------
def test_an_aimv2_checkpoint_under_siglip_is_refused_naming_no_family(tmp_path):
    _save_aimv2(tmp_path)
    with pytest.raises(ConfigError) as info:
        build_encoder(_real("siglip_b", tmp_path))
    assert info.value.key == "encoders.siglip_b.family"
    message = str(info.value)
    assert "model_type 'aimv2_vision_model'" in message and "family 'siglip'" in message
    assert "no dedicated family handles aimv2_vision_model" in message
    assert "use family: hf_auto" in message


def test_a_dinov2_checkpoint_under_clip_names_family_dinov2(tmp_path):
    build_encoder(DEMO_SPECS["dinov2"]).model.save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="use family: dinov2") as info:
        build_encoder(_real("clip224", tmp_path))
    assert info.value.key == "encoders.clip224.family"


def test_an_mlcd_checkpoint_under_clip_is_refused(tmp_path):
    """MLCD has rotary positions: as a CLIP its position embeddings would be random."""
    from transformers import MLCDVisionConfig, MLCDVisionModel

    MLCDVisionModel(MLCDVisionConfig(**VIT, patch_size=14, image_size=112)).save_pretrained(
        tmp_path
    )
    with pytest.raises(ConfigError, match="mlcd_vision_model") as info:
        build_encoder(_real("clip224", tmp_path))
    assert info.value.key == "encoders.clip224.family"


def test_tensors_are_checked_even_when_the_config_claims_the_family(tmp_path):
    """An AIMv2 checkpoint whose config.json was relabelled siglip: its tensors still do not fit."""
    _save_aimv2(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["model_type"] = "siglip_vision_model"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="MISSING") as info:
        build_encoder(_real("siglip_b", tmp_path))
    assert info.value.key == "encoders.siglip_b.model_id"
    assert "embeddings.patch_embedding.weight" in str(info.value)
    assert "UNEXPECTED" in str(info.value)


# ---- a partially loadable checkpoint -----------------------------------------------------------
def test_a_checkpoint_missing_a_tensor_is_refused_naming_it(tmp_path):
    build_encoder(DEMO_SPECS["clip224"]).model.save_pretrained(tmp_path)
    tensor = "encoder.layers.1.mlp.fc2.weight"  # saved without the vision_model. prefix
    _edit_tensors(tmp_path, lambda state: {k: v for k, v in state.items() if k != tensor})
    with pytest.raises(ConfigError, match="1 MISSING") as info:
        build_encoder(_real("clip224", tmp_path))
    assert info.value.key == "encoders.clip224.model_id"
    assert "encoder.layers.1.mlp.fc2.weight" in str(info.value)


def test_a_position_embedding_of_another_size_is_refused(tmp_path):
    build_encoder(DEMO_SPECS["siglip_b"]).model.save_pretrained(tmp_path)
    key = "embeddings.position_embedding.weight"

    def shrink(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        state[key] = state[key][:16].clone()  # a 4x4 grid's embeddings, the model has 8x8
        return state

    _edit_tensors(tmp_path, shrink)
    with pytest.raises(ConfigError, match="size-MISMATCHED") as info:
        build_encoder(_real("siglip_b", tmp_path))
    assert info.value.key == "encoders.siglip_b.model_id"
    assert "position_embedding.weight (checkpoint (16, 32), model (64, 32))" in str(info.value)


def test_an_unexpected_tensor_outside_the_allow_list_is_refused(tmp_path):
    build_encoder(DEMO_SPECS["dinov2"]).model.save_pretrained(tmp_path)
    _edit_tensors(tmp_path, lambda state: {**state, "text_model.extra.weight": torch.zeros(2)})
    with pytest.raises(ConfigError, match="UNEXPECTED.*text_model.extra.weight") as info:
        build_encoder(_real("dinov2", tmp_path))
    assert info.value.key == "encoders.dinov2.model_id"


def test_a_diffusers_part_missing_a_tensor_is_refused(tmp_path):
    spec = DEMO_SPECS["dit"]
    tiny = build_encoder(spec)
    for part in ("vae", "transformer"):
        tiny.model[part].save_pretrained(tmp_path / part)
    tiny.scheduler.save_pretrained(tmp_path / "scheduler")
    _edit_tensors(
        tmp_path / "transformer",
        lambda state: {k: v for k, v in state.items() if k != "proj_out_2.weight"},
        "diffusion_pytorch_model.safetensors",
    )
    with pytest.raises(ConfigError, match="MISSING.*proj_out_2.weight") as info:
        build_encoder(_real("dit", tmp_path))
    assert info.value.key == "encoders.dit.model_id"


# ---- the checkpoints that fit still load -------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "full_class", "config_class"),
    [("clip224", "CLIPModel", "CLIPConfig"), ("siglip_b", "SiglipModel", "SiglipConfig")],
)
def test_a_full_checkpoint_loads_its_vision_tower(name, full_class, config_class, tmp_path):
    """The text tower and projections of a full CLIP/SigLIP are the allowed unused heads; the
    vision tower loaded from the full checkpoint is exactly the saved one."""
    import transformers

    patch = DEMO_SPECS[name].patch_size
    vision = {**VIT, "patch_size": patch, "image_size": DEMO_SPECS[name].input_size}
    config = getattr(transformers, config_class)(vision_config=vision, text_config=TEXT)
    full = getattr(transformers, full_class)(config)
    full.save_pretrained(tmp_path)
    encoder = build_encoder(_real(name, tmp_path))
    saved, loaded = full.vision_model.state_dict(), encoder.model.state_dict()
    assert sorted(loaded) == sorted(saved)
    for key, value in loaded.items():
        torch.testing.assert_close(value, saved[key])
    assert encoder.encode_images(random_images(1)).shape[1] == 64


@pytest.mark.slow
def test_a_twin_in_the_hub_cache_under_a_real_id_is_checked_as_it_loads(tmp_path):
    """The Hub-cache path (HF_HOME, offline, real repo ids): the right checkpoint loads, an
    AIMv2 one under the siglip id's entry is refused by the features job's own loading."""
    from helpers.hub_twins import snapshot_dir

    spec = dataclasses.replace(DEMO_SPECS["siglip_b"], tiny=None, model_id="google/siglip-x")
    build_encoder(DEMO_SPECS["siglip_b"]).model.save_pretrained(
        snapshot_dir(tmp_path / "hub", "google/siglip-x")
    )
    _save_aimv2(snapshot_dir(tmp_path / "hub", "apple/aimv2-x"))
    script = (
        "import dataclasses, json, sys\n"
        "from vislaw.config import ConfigError\n"
        "from vislaw.encoders.base import EncoderSpec\n"
        "from vislaw.encoders.registry import build_encoder\n"
        "spec = EncoderSpec(**json.loads(sys.argv[1]))\n"
        "build_encoder(spec)\n"
        "try:\n"
        "    build_encoder(dataclasses.replace(spec, model_id='apple/aimv2-x'))\n"
        "except ConfigError as error:\n"
        "    print(error)\n"
    )
    attrs = {k: v for k, v in spec.to_attrs().items() if k not in ("members", "tiny")}
    env = {**os.environ, "HF_HOME": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(attrs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "config key 'encoders.siglip_b.family'" in done.stdout
    assert "apple/aimv2-x has model_type 'aimv2_vision_model'" in done.stdout

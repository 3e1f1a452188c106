"""Family ``open_clip``: an open_clip model's vision tower through
``open_clip.create_model_from_pretrained``; the real path reads a tiny CLIP saved under LAION's
real ConvNeXt-CLIP id in open_clip's own Hub layout, offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from vislaw.checks import check_encoder
from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.open_clip_models import OpenClipEncoder
from vislaw.encoders.registry import build_encoder, token_grid

LAION_CONVNEXT = "laion/CLIP-convnext_large_d_320.laion2B-s29B-b131K-ft-soup"
TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {
        "timm_model_name": "convnext_zepto_rms",
        "timm_model_pretrained": False,
        "timm_pool": "",
        "timm_proj": "mlp",
        "image_size": 64,
    },
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}


def _images(n: int = 2) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)) for _ in range(n)]


def test_convnext_twin_gives_the_trunks_stage_map():
    encoder = build_encoder(EncoderSpec("cx", "open_clip", 128, tiny={}, seed=1))
    trunk = encoder.model.trunk
    assert type(encoder.model).__name__ == "TimmModel" and type(trunk).__name__ == "ConvNeXt"
    pixels = encoder.preprocess(_images())
    feats = encoder.encode(pixels)
    assert feats.shape == (2, 16, 256)  # stride 32, the last stage's width
    with torch.no_grad():  # the last stage's output by hand
        x = trunk.stem(pixels)
        for stage in trunk.stages:
            x = stage(x)
    torch.testing.assert_close(feats, x.flatten(2).transpose(1, 2), rtol=1e-4, atol=1e-5)
    earlier = build_encoder(EncoderSpec("cx", "open_clip", 128, tiny={}, seed=1, layer=-2))
    assert earlier.encode(pixels).shape == (2, 64, 128)  # stride 16


def test_vit_twin_gives_the_chosen_blocks_tokens_without_cls():
    spec = EncoderSpec("vit", "open_clip", 64, tiny={"model_name": "ViT-B-16"}, seed=1)
    encoder = build_encoder(spec)
    assert type(encoder.model).__name__ == "VisionTransformer"
    pixels = encoder.preprocess(_images())
    feats = encoder.encode(pixels)
    assert feats.shape == (2, 16, 32)
    with torch.no_grad():
        x = encoder.model._embeds(pixels)
        for block in encoder.model.transformer.resblocks[:-1]:
            x = block(x)
    torch.testing.assert_close(feats, x[:, 1:], rtol=1e-4, atol=1e-5)


def _save_hub_checkpoint(snapshot, mean, std, weights: bool = True) -> torch.nn.Module:
    """A tiny CLIP in the layout open_clip's Hub repos have (open_clip_config.json with
    model_cfg and preprocess_cfg, open_clip_model.safetensors)."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = CLIP(**json.loads(json.dumps(TINY_CLIP_CFG)))
    config = {"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {"mean": mean, "std": std}}
    (snapshot / "open_clip_config.json").write_text(json.dumps(config))
    if weights:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(snapshot / "open_clip_model.safetensors"))
    return model


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from helpers.hub_twins import snapshot_dir

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return lambda repo_id: snapshot_dir(tmp_path, repo_id)


def test_real_path_loads_the_hub_layout_strictly_with_its_own_normalisation(hub_cache):
    mean, std = [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]
    snapshot = hub_cache(LAION_CONVNEXT)
    saved = _save_hub_checkpoint(snapshot, mean, std)
    # What a download must fetch: every file open_clip read here.
    assert {p.name for p in snapshot.iterdir()} <= set(OpenClipEncoder.hub_files)
    spec = EncoderSpec("cnx", "open_clip", 96, model_id=LAION_CONVNEXT)
    assert token_grid(spec) == (3, 3)  # stride 32 read from the checkpoint's ConvNeXt trunk
    encoder = build_encoder(spec)
    assert (encoder.mean, encoder.std) == (tuple(mean), tuple(std))
    torch.testing.assert_close(encoder.model.state_dict(), saved.visual.state_dict())
    assert encoder.encode_images(_images()).shape == (2, 9, 256)
    # open_clip's own prefix is accepted too.
    prefixed = EncoderSpec("cnx", "open_clip", 96, model_id="hf-hub:" + LAION_CONVNEXT, layer=-3)
    assert token_grid(prefixed) == (12, 12)  # stage 1: stride 8


def test_a_repo_without_weights_is_refused_not_random(hub_cache):
    _save_hub_checkpoint(hub_cache(LAION_CONVNEXT), [0.5] * 3, [0.5] * 3, weights=False)
    with pytest.raises(RuntimeError, match="(?i)pretrained"):
        build_encoder(EncoderSpec("cnx", "open_clip", 96, model_id=LAION_CONVNEXT))


def test_config_check_reads_the_checkpoints_config(hub_cache):
    _save_hub_checkpoint(hub_cache(LAION_CONVNEXT), [0.5] * 3, [0.5] * 3, weights=False)
    with pytest.raises(
        ConfigError, match=r"encoders.cnx.input_size.*multiple of the patch size 32"
    ):
        check_encoder(EncoderSpec("cnx", "open_clip", 100, model_id=LAION_CONVNEXT))
    with pytest.raises(ConfigError, match=r"encoders.cnx.layer.*4 stages"):
        check_encoder(EncoderSpec("cnx", "open_clip", 96, model_id=LAION_CONVNEXT, layer=4))
    vit = EncoderSpec("vit", "open_clip", 64, tiny={"model_name": "ViT-B-16"}, layer=3)
    with pytest.raises(ConfigError, match=r"encoders.vit.layer.*blocks"):
        check_encoder(vit)
    with pytest.raises(ConfigError, match=r"encoders.gone.patch_size.*not local or cached"):
        check_encoder(EncoderSpec("gone", "open_clip", 96, model_id="laion/not-in-the-cache"))
    with pytest.raises(ConfigError, match=r"encoders.t.tiny.model_name.*built-in"):
        token_grid(EncoderSpec("t", "open_clip", 96, tiny={"model_name": "no-such-model"}))

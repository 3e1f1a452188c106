"""Family ``timm``: any timm backbone, through ``timm.create_model``; the real loading path
reads a folder written by ``timm.models.save_for_hf`` (``local-dir:``), offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder, token_grid

TINY = {"model_name": "vit_small_patch16_224", "embed_dim": 32, "depth": 3, "num_heads": 4}


def _images(n: int = 2) -> list[Image.Image]:
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)) for _ in range(n)]


def test_twin_features_are_the_chosen_blocks_patch_tokens_without_registers():
    spec = EncoderSpec("reg", "timm", 64, tiny={"reg_tokens": 4}, patch_size=16, seed=2)
    encoder = build_encoder(spec)
    assert encoder.model.num_prefix_tokens == 5  # CLS + 4 registers
    pixels = encoder.preprocess(_images())
    feats = encoder.encode(pixels)
    assert feats.shape == (2, 16, 32)
    with torch.no_grad():  # block -2's output by hand: the tokens after the prefix
        x = encoder.model.patch_embed(pixels)
        x = encoder.model.norm_pre(encoder.model._pos_embed(x))
        for block in encoder.model.blocks[:-1]:
            x = block(x)
    torch.testing.assert_close(feats, x[:, 5:], rtol=1e-5, atol=1e-6)
    last = build_encoder(EncoderSpec("reg", "timm", 64, tiny={"reg_tokens": 4}, patch_size=16,
                                     seed=2, layer=-1))  # fmt: skip
    assert not torch.allclose(last.encode(pixels), feats)


def test_real_path_loads_a_save_for_hf_folder_with_its_own_normalisation(tmp_path):
    import timm

    args = {**TINY, "img_size": 64, "reg_tokens": 4}
    name = args.pop("model_name")
    model = timm.create_model(name, pretrained=False, num_classes=0, **args)
    model.pretrained_cfg = {**model.pretrained_cfg, "mean": (0.1, 0.2, 0.3), "std": (0.3, 0.2, 0.1)}
    timm.models.save_for_hf(
        model, tmp_path / "ckpt", model_args={**args, "num_classes": 0}, safe_serialization=True
    )
    spec = EncoderSpec("pe", "timm", 64, model_id=str(tmp_path / "ckpt"), patch_size=16)
    encoder = build_encoder(spec)
    assert (encoder.mean, encoder.std) == ((0.1, 0.2, 0.3), (0.3, 0.2, 0.1))
    torch.testing.assert_close(encoder.model.pos_embed, model.pos_embed)
    # At another size the checkpoint's position embeddings are resampled, not refused.
    bigger = build_encoder(EncoderSpec("pe", "timm", 96, model_id=str(tmp_path / "ckpt"),
                                       patch_size=16))  # fmt: skip
    assert bigger.encode_images(_images()).shape == (2, 36, 32)


def test_a_cnn_takes_its_stride_as_patch_size():
    spec = EncoderSpec(
        "cnx", "timm", 64, patch_size=32, layer=-1,
        tiny={"model_name": "convnext_atto", "dims": (8, 16, 24, 32)},
    )  # fmt: skip
    assert build_encoder(spec).encode_images(_images()).shape == (2, 4, 32)


def test_a_real_checkpoint_needs_its_patch_size_named():
    with pytest.raises(ConfigError, match="encoders.pe.patch_size"):
        token_grid(EncoderSpec("pe", "timm", 336, model_id="timm/vit_pe_core_large_patch14_336"))

"""Family ``hf_auto``: any transformers vision backbone, its facts read from the checkpoint.

Every case is a tiny random-init model of a real transformers architecture class (DINOv2 with
registers, DINOv3, AIMv2, SigLIP, SigLIP 2 NaFlex), built by the family's twin path, and saved
with ``save_pretrained`` so the real ``from_pretrained`` path loads it from a local folder.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder, token_grid

# (model_type, input size, patch, extra config, tokens before the patch grid)
TWINS = [
    ("dinov2_with_registers", 56, 14, {"num_register_tokens": 4}, 5),
    ("dinov3_vit", 64, 16, {"num_register_tokens": 4}, 5),
    ("aimv2_vision_model", 56, 14, {}, 0),
    ("siglip_vision_model", 64, 16, {}, 0),
    ("siglip2_vision_model", 64, 16, {}, 0),
]


def _images(n: int = 2) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (48, 72, 3), dtype=np.uint8)) for _ in range(n)]


def _twin(model_type: str, size: int, patch: int, extra: dict, **kwargs) -> EncoderSpec:
    return EncoderSpec(
        f"t_{model_type}", "hf_auto", size, tiny={"model_type": model_type, **extra},
        patch_size=patch, seed=5, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize("model_type,size,patch,extra,prefix", TWINS)
def test_twin_features_are_the_patch_tokens_of_the_chosen_layer(
    model_type, size, patch, extra, prefix
):
    encoder = build_encoder(_twin(model_type, size, patch, extra))
    rows, cols = encoder.grid
    pixels = encoder.preprocess(_images())
    feats = encoder.encode(pixels)
    assert feats.shape == (2, rows * cols, 32)
    with torch.no_grad():
        out = encoder.model(**encoder._inputs(pixels), output_hidden_states=True)
    hidden = out.hidden_states[-2]
    assert hidden.shape[1] == prefix + rows * cols  # CLS and registers counted, then dropped
    torch.testing.assert_close(feats, hidden[:, prefix:], rtol=0, atol=0)
    assert not torch.allclose(feats[0], feats[1].roll(1, dims=0))


def test_naflex_patches_are_its_processors_patches():
    from transformers.models.siglip2.image_processing_siglip2 import convert_image_to_patches

    encoder = build_encoder(_twin("siglip2_vision_model", 64, 16, {}))
    pixels = encoder.preprocess(_images(1))
    ours = encoder._inputs(pixels)
    theirs = convert_image_to_patches(pixels[0], 16).numpy()
    np.testing.assert_array_equal(ours["pixel_values"][0].numpy(), theirs)
    assert ours["spatial_shapes"].tolist() == [[4, 4]]
    assert bool(ours["pixel_attention_mask"].all())


def _save_checkpoint(spec: EncoderSpec, folder, mean, std) -> None:
    """The twin as a checkpoint folder: weights, config.json and an image processor."""
    from transformers import BitImageProcessor

    build_encoder(spec).model.save_pretrained(folder)
    BitImageProcessor(image_mean=list(mean), image_std=list(std)).save_pretrained(folder)


def test_real_path_reads_patch_size_normalisation_and_weights_from_the_checkpoint(tmp_path):
    twin = _twin("dinov2_with_registers", 56, 14, {"num_register_tokens": 4})
    mean, std = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)
    _save_checkpoint(twin, tmp_path / "ckpt", mean, std)
    real = EncoderSpec("reg", "hf_auto", 56, model_id=str(tmp_path / "ckpt"))  # no patch_size
    assert token_grid(real) == (4, 4)  # 14 read from config.json
    encoder = build_encoder(real)
    assert (encoder.mean, encoder.std) == (mean, std)
    images = _images()
    twin_encoder = build_encoder(twin)
    twin_encoder.mean, twin_encoder.std = mean, std
    torch.testing.assert_close(encoder.encode_images(images), twin_encoder.encode_images(images))
    # The entry's own normalisation wins over the processor's.
    own = dataclasses.replace(real, options={"mean": [0.5] * 3, "std": [0.5] * 3})
    assert build_encoder(own).mean == (0.5, 0.5, 0.5)


def test_dual_tower_checkpoint_gives_its_vision_tower(tmp_path):
    from transformers import SiglipConfig, SiglipModel

    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = SiglipConfig(
        text_config={**tiny, "intermediate_size": 64, "vocab_size": 99},
        vision_config={**tiny, "intermediate_size": 64, "image_size": 64, "patch_size": 16},
    )
    SiglipModel(config).save_pretrained(tmp_path / "siglip2")
    spec = EncoderSpec(
        "s2", "hf_auto", 64, model_id=str(tmp_path / "siglip2"), options={"mean": [0.5] * 3,
        "std": [0.5] * 3},
    )  # fmt: skip
    assert token_grid(spec) == (4, 4)  # patch size from vision_config
    encoder = build_encoder(spec)
    assert type(encoder.model).__name__.startswith("SiglipVision")  # the text tower is gone
    assert encoder.encode_images(_images()).shape == (2, 16, 32)


REMOTE_MODEL = """
import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class RemoteConfig(PretrainedConfig):
    model_type = "vislaw_remote_test"

    def __init__(self, hidden_size=8, patch_size=8, **kwargs):
        self.hidden_size, self.patch_size = hidden_size, patch_size
        super().__init__(**kwargs)


class RemoteModel(PreTrainedModel):
    config_class = RemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.proj = torch.nn.Conv2d(3, config.hidden_size, config.patch_size, config.patch_size)
        self.post_init()

    def forward(self, pixel_values, output_hidden_states=False):
        tokens = self.proj(pixel_values).flatten(2).transpose(1, 2)
        return BaseModelOutput(last_hidden_state=tokens, hidden_states=(tokens, tokens))
"""


def test_remote_code_runs_only_when_the_entry_says_so(tmp_path):
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "modeling_remote.py").write_text(REMOTE_MODEL)
    config = {
        "model_type": "vislaw_remote_test",
        "hidden_size": 8,
        "patch_size": 8,
        "auto_map": {
            "AutoConfig": "modeling_remote.RemoteConfig",
            "AutoModel": "modeling_remote.RemoteModel",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    norm = {"mean": [0.5] * 3, "std": [0.5] * 3}
    spec = EncoderSpec("remote", "hf_auto", 32, model_id=str(folder), options=norm)
    with pytest.raises(ValueError, match="trust_remote_code"):
        build_encoder(spec)
    trusted = dataclasses.replace(spec, options={**norm, "trust_remote_code": True})
    from transformers import AutoConfig, AutoModel

    remote = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    AutoModel.from_config(remote, trust_remote_code=True).save_pretrained(folder)
    assert build_encoder(trusted).encode_images(_images()).shape == (2, 16, 8)


def test_what_it_cannot_read_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="encoders.t.tiny.model_type"):
        build_encoder(EncoderSpec("t", "hf_auto", 56, tiny={}, patch_size=14))
    absent = EncoderSpec("gone", "hf_auto", 56, model_id="nobody/not-cached-anywhere")
    with pytest.raises(ConfigError, match="encoders.gone.patch_size"):
        token_grid(absent)
    with pytest.raises(ConfigError, match="encoders.t.input_size"):
        token_grid(EncoderSpec("t", "hf_auto", 50, tiny={"model_type": "x"}, patch_size=14))
    twin = _twin("aimv2_vision_model", 56, 14, {})
    build_encoder(twin).model.save_pretrained(tmp_path / "noproc")  # no image processor
    real = EncoderSpec("np", "hf_auto", 56, model_id=str(tmp_path / "noproc"))
    with pytest.raises(ConfigError, match="encoders.np.options.*options.mean"):
        build_encoder(real)

"""The one image geometry (letterbox) and each family's normalisation numerics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vislaw.encoders.base import (
    CLIP_MEAN,
    CLIP_STD,
    HALF_MEAN,
    HALF_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
)
from vislaw.encoders.preprocess import Letterbox, images_to_tensor, letterbox
from vislaw.encoders.registry import FAMILIES

# Each family's own normalisation (docs/encoders.md): CLIP/ConvNeXt CLIP's, DINOv2 ImageNet's,
# SigLIP and the diffusion models [-1, 1].
EXPECTED_NORM = {
    "clip": (CLIP_MEAN, CLIP_STD),
    "convnext": (CLIP_MEAN, CLIP_STD),
    "dinov2": (IMAGENET_MEAN, IMAGENET_STD),
    "siglip": (HALF_MEAN, HALF_STD),
    "sd_unet": (HALF_MEAN, HALF_STD),
    "sd_image_variations": (HALF_MEAN, HALF_STD),
    "dit": (HALF_MEAN, HALF_STD),
    "sd3": (HALF_MEAN, HALF_STD),
    # Any backbone: its checkpoint's processor's (test_hf_auto.py beside this); a twin's [-1, 1].
    "hf_auto": (HALF_MEAN, HALF_STD),
    # timm: the model's own data config (test_timm.py); the class default is [-1, 1].
    "timm": (HALF_MEAN, HALF_STD),
    # open_clip: the checkpoint's preprocess_cfg (test_open_clip.py); else OpenAI's.
    "open_clip": (CLIP_MEAN, CLIP_STD),
}
COLOUR = (200, 100, 30)


def _quantum(std) -> float:
    """Half an 8-bit step after normalisation: the padding colour is stored as uint8."""
    return 0.5 / 255 / min(std) + 1e-6


def test_the_families_normalisation_is_the_documented_one():
    """The hand-checked values (model cards) of the families listed; a new family is read from
    its class below and needs no entry here."""
    assert set(EXPECTED_NORM) <= set(FAMILIES)
    for family, (mean, std) in EXPECTED_NORM.items():
        assert (FAMILIES[family].mean, FAMILIES[family].std) == (mean, std), family


@pytest.mark.parametrize("family", sorted(set(FAMILIES) - {"fusion"}))
def test_constant_colour_maps_to_expected_value(family):
    mean, std = EXPECTED_NORM.get(family, (FAMILIES[family].mean, FAMILIES[family].std))
    image = Image.new("RGB", (40, 40), COLOUR)
    pixels = images_to_tensor([image], 32, FAMILIES[family].mean, FAMILIES[family].std)
    expected = [(c / 255 - m) / s for c, m, s in zip(COLOUR, mean, std, strict=True)]
    assert pixels.shape == (1, 3, 32, 32)
    for channel in range(3):
        torch.testing.assert_close(
            pixels[0, channel], torch.full((32, 32), expected[channel]), atol=1e-5, rtol=0
        )


def test_half_normalisation_spans_minus_one_to_one():
    black, white = Image.new("RGB", (8, 8), (0, 0, 0)), Image.new("RGB", (8, 8), (255,) * 3)
    pixels = images_to_tensor([black, white], 8, HALF_MEAN, HALF_STD)
    assert pixels[0].min() == pixels[0].max() == -1
    assert pixels[1].min() == pixels[1].max() == 1


@pytest.mark.parametrize("family", sorted(EXPECTED_NORM))
def test_letterbox_padding_is_zero_after_normalisation(family):
    mean, std = EXPECTED_NORM[family]
    wide = Image.new("RGB", (80, 40), COLOUR)  # pads 20 rows top and bottom
    pixels = images_to_tensor([wide], 80, mean, std)[0]
    box = Letterbox(80, 40, 80)
    top = int(box.to_input(np.array([0.0, 0.0]))[1])
    bottom = int(np.ceil(box.to_input(np.array([80.0, 40.0]))[1]))
    assert (top, bottom) == (20, 60)
    # Away from the bicubic blend at the border, the padding is zero up to 8-bit rounding.
    padding = torch.cat([pixels[:, : top - 2], pixels[:, bottom + 2 :]], dim=1)
    assert padding.abs().max() <= _quantum(std)
    assert pixels[:, top + 2 : bottom - 2].abs().min() > 0.1  # the image itself is not padding


@pytest.mark.parametrize(("width", "height", "size"), [(60, 40, 30), (33, 71, 224), (50, 50, 64)])
def test_letterbox_round_trip(width, height, size):
    box = Letterbox(width, height, size)
    rng = np.random.default_rng(0)
    points = rng.uniform(0, [width, height], size=(20, 2))
    np.testing.assert_allclose(box.to_original(box.to_input(points)), points, atol=1e-9)
    corners = box.to_input(np.array([[0.0, 0.0], [width, height]]))
    assert corners.min() >= 0 and corners.max() <= size + 1e-9
    # The long side spans the whole input.
    span = corners[1] - corners[0]
    assert max(span) == pytest.approx(size)


@pytest.mark.parametrize(("width", "height"), [(70, 30), (31, 64)])
def test_to_input_matches_where_letterbox_pastes(width, height):
    """A marked pixel lands where ``to_input`` maps its centre, with and without resizing."""
    x, y = 5, 7
    array = np.zeros((height, width, 3), dtype=np.uint8)
    array[y, x] = 255
    image = Image.fromarray(array)
    side = max(width, height)
    # At scale 1 the paste is exact: the bright pixel is at to_input of its corner.
    same = np.asarray(letterbox(image, side, (0, 0, 0)))[..., 0]
    col, row = Letterbox(width, height, side).to_input(np.array([x, y], dtype=float))
    assert same[int(row), int(col)] == 255 and same.sum() == 255
    # Scaled x3: the bright blob is centred on to_input of the pixel centre.
    big = np.asarray(letterbox(image, 3 * side, (0, 0, 0)))[..., 0].astype(float)
    centre = Letterbox(width, height, 3 * side).to_input(np.array([x + 0.5, y + 0.5]))
    rows, cols = np.nonzero(big > big.max() / 2)
    assert cols.mean() + 0.5 == pytest.approx(centre[0], abs=0.5)
    assert rows.mean() + 0.5 == pytest.approx(centre[1], abs=0.5)


def test_diffusion_image_condition_uses_clip_numerics():
    """sd_image_variations hands its image encoder 224 px, CLIP-normalised pixels."""
    from vislaw.encoders.registry import build_encoder

    spec = EncoderSpec("sdim", "sd_image_variations", input_size=64, tiny={})
    encoder = build_encoder(spec)
    pixels = encoder.preprocess([Image.new("RGB", (64, 64), COLOUR)])
    clip = encoder._clip_pixels(pixels)
    assert clip.shape == (1, 3, 224, 224)
    expected = [(c / 255 - m) / s for c, m, s in zip(COLOUR, CLIP_MEAN, CLIP_STD, strict=True)]
    for channel in range(3):
        assert clip[0, channel].mean().item() == pytest.approx(expected[channel], abs=1e-4)

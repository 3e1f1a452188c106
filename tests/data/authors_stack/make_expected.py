"""Writes ``expected.npz``: what the authors' pinned library stack (transformers 4.38.2) computes
for the preprocessing and DINOv2 position interpolation that ``protocol: paper`` reproduces.

The tests compare vislaw against these arrays, not against today's transformers, whose image
processors differ from 4.38's by about one grey level. Regenerate (only needed if an input
below changes) with transformers 4.38.2 in a separate folder, in front of this project's torch::

    pip install --target /tmp/tf438 transformers==4.38.2 'tokenizers<0.19'
    PYTHONPATH=/tmp/tf438 python tests/data/authors_stack/make_expected.py

Inputs are built here from seeds with numpy and PIL only, the same way the tests build them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth non-square image (the tests' ``_photo``)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)


def squared(processor, image: Image.Image) -> np.ndarray:
    """The processor's square in 0..255, before rescaling and normalising (H, W, 3)."""
    out = processor(images=[image], do_rescale=False, do_normalize=False, return_tensors="np")
    return np.asarray(out["pixel_values"][0]).transpose(1, 2, 0)


def main() -> None:
    assert transformers.__version__ == "4.38.2", transformers.__version__
    from transformers import (
        BitImageProcessor,
        CLIPImageProcessor,
        Dinov2Config,
        Dinov2Model,
        SiglipImageProcessor,
    )

    arrays: dict[str, np.ndarray] = {}
    # CLIP's stock processor at 112 px (shortest edge, centre crop).
    clip = CLIPImageProcessor(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112})
    arrays["clip_crop_112"] = squared(clip, photo(90, 60))
    # DINOv2's stock processor (256 -> crop 224) and the authors' commented-out 336-style
    # override (size and crop_size both {width, height}), here at 112 px to keep the file small.
    kwargs = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "do_convert_rgb": True}
    stock = BitImageProcessor(
        size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224}, **kwargs
    )
    arrays["dinov2_crop_224"] = squared(stock, photo(300, 200))
    square = {"height": 112, "width": 112}
    arrays["dinov2_stretch_112"] = squared(
        BitImageProcessor(size=square, crop_size=square, **kwargs), photo(300, 200)
    )
    # SigLIP's processor: a stretch to the square.
    siglip = SiglipImageProcessor(size={"height": 128, "width": 128})
    arrays["siglip_stretch_128"] = squared(siglip, photo(90, 60))
    # DINOv2 position embeddings of a real 37x37 grid (518 px / 14) for a 336 px input (24x24).
    config = Dinov2Config(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=2, patch_size=14, image_size=518
    )
    torch.manual_seed(0)
    model = Dinov2Model(config).eval()
    positions = torch.randn_like(model.embeddings.position_embeddings)
    with torch.no_grad():
        model.embeddings.position_embeddings.copy_(positions)
        tokens = torch.zeros(1, 1 + 24 * 24, 8)
        out = model.embeddings.interpolate_pos_encoding(tokens, 336, 336)
    arrays["dinov2_positions_37"] = positions.numpy()
    arrays["dinov2_positions_37_to_24"] = out.numpy()
    np.savez_compressed(Path(__file__).with_name("expected.npz"), **arrays)


if __name__ == "__main__":
    main()

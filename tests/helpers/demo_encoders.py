"""The demo config's encoders (config/demo.yaml: one tiny twin of every family) and random
images of several sizes: what the encoder tests and the weight checks build and encode."""

from __future__ import annotations

import numpy as np
from PIL import Image

from helpers.paths import ROOT
from vislaw.pipeline import load_checked_config

DEMO_CONFIG, DEMO_SPECS = load_checked_config(ROOT / "config/demo.yaml")


def random_images(n: int = 3, seed: int = 0) -> list[Image.Image]:
    """``n`` seeded noise images in four sizes, none square, so the letterbox pads each."""
    rng = np.random.default_rng(seed)
    sizes = [(40, 60), (50, 50), (64, 48), (30, 70)]
    return [
        Image.fromarray(rng.integers(0, 255, size=(*sizes[i % 4], 3), dtype=np.uint8))
        for i in range(n)
    ]

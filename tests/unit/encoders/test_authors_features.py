"""``protocol: paper`` against the authors' own code, family by family (issue 26).

``tests/data/authors_stack/features.npz`` holds what the authors' towers, their fusion and their
``C_score/extract_feature.py`` computed, run in their pinned stack (transformers 4.38.2 and the
diffusers vendored in their repository), on the tiny twins committed under
``tests/data/authors_stack/twins/`` and the same ``photo.png``; ``make_features.py`` there says
exactly how, and what had to change to run their code on CPU. vislaw loads the SAME twin files
under ``protocol: paper``, takes the same image through its own preprocessing, and must land
within rel 1e-5 (rel = |a - b| / |b| over the whole tensor) of their MLLM features (what the
projector sees) and of their C-score features, for every family the authors had.

The DINOv2 twin has the real 37x37 position grid (518 px / 14), so both the 224 px (stock
processor, 16x16) and the 336 px (stretch, 24x24) cases interpolate the positions.

Their diffusion featurizers draw two random things per call (a VAE posterior *sample* and a
fresh noise map); the ``*_mllm``/``*_c`` keys fix those draws to vislaw's (posterior mean, one
seeded map), the ``*_random`` keys keep theirs: no run of ours can reproduce their RNG, and the
test bounds that distance by its measured value instead (large on random-init twins, whose VAE
posterior std is ~1).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.paths import DATA
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder

HERE = DATA / "authors_stack"
EXPECTED = np.load(HERE / "features.npz")
TOLERANCE = 1e-5


def _load_recipe() -> types.ModuleType:
    """make_features.py (stdlib-only at import): the cases and twins both sides used."""
    spec = importlib.util.spec_from_file_location(
        "authors_make_features", HERE / "make_features.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RECIPE = _load_recipe()
VIT_FAMILIES = ("clip", "siglip", "dinov2")
# rel between vislaw and the authors' code with THEIR random draws (VAE sample, noise map,
# torch.manual_seed(0)), measured on these twins; the bound asserted is 1.05x.
RANDOM_DRAWS_REL = {
    "sd_unet_128": 0.908,
    "sd_unet_128_up1": 1.083,
    "sdxl_128": 0.930,
    "sd_image_variations_128": 1.036,
    "dit_128": 0.143,
    "sd3_128": 0.759,
}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _member_spec(case: str) -> EncoderSpec:
    """The paper-protocol spec of one case: the committed twin folder as the checkpoint."""
    folder, size, extra = RECIPE.CASES[case]
    family, tiny, _built_at = RECIPE.TWIN_SPECS[folder]
    kwargs = {"patch_size": tiny["patch_size"]} if family in VIT_FAMILIES else {}
    if "up_block" in extra:
        kwargs["up_block"] = extra["up_block"]
    return EncoderSpec(
        name=case.replace("+", "_"), family=family, input_size=size,
        model_id=str(RECIPE.TWINS / folder), protocol="paper", seed=RECIPE.SEED, **kwargs,
    )  # fmt: skip


@functools.cache
def _encoder(case: str):
    if case in RECIPE.FUSIONS:
        members = tuple(_member_spec(m) for m in RECIPE.FUSIONS[case])
        spec = EncoderSpec(
            name="fusion", family="fusion", input_size=members[0].input_size, members=members,
            protocol="paper", seed=RECIPE.SEED,
        )  # fmt: skip
        return build_encoder(spec)
    return build_encoder(_member_spec(case))


@functools.cache
def _features(case: str, purpose: str) -> np.ndarray:
    photo = Image.open(HERE / "photo.png").convert("RGB")
    with torch.no_grad():
        return _encoder(case).encode_images([photo], purpose).float().numpy()


KEYS = {"mllm": "mllm", "c_score": "c"}
COMPARED = [
    (case, purpose)
    for case in [*RECIPE.CASES, *RECIPE.FUSIONS]
    for purpose in KEYS
    if f"{case}_{KEYS[purpose]}" in EXPECTED
]


def test_every_family_of_the_authors_is_compared():
    """Every tower the authors had (and their fusion) has an MLLM and a C-score case."""
    families = {RECIPE.TWIN_SPECS[RECIPE.CASES[c][0]][0] for c in RECIPE.CASES}
    assert families == set(VIT_FAMILIES) | {"sd_unet", "sd_image_variations", "dit", "sd3"}
    assert RECIPE.FUSIONS
    for family in families:
        cases = [c for c in RECIPE.CASES if RECIPE.TWIN_SPECS[RECIPE.CASES[c][0]][0] == family]
        assert {p for c, p in COMPARED if c in cases} == set(KEYS), family
    # The real 37x37 DINOv2 position grid, interpolated at both sizes.
    assert RECIPE.TWIN_SPECS["dinov2-large"][2] == 518
    assert {RECIPE.CASES[c][1] for c in ("dinov2_224", "dinov2_336")} == {224, 336}


@pytest.mark.parametrize("case,purpose", COMPARED)
def test_paper_protocol_matches_the_authors_code(case, purpose):
    expected = EXPECTED[f"{case}_{KEYS[purpose]}"]
    ours = _features(case, purpose)
    assert ours.shape == expected.shape
    assert _rel(ours, expected) <= TOLERANCE, (case, purpose, _rel(ours, expected))


@pytest.mark.parametrize("case", sorted(RANDOM_DRAWS_REL))
def test_their_random_draws_stay_within_the_measured_bound(case):
    """With their own RNG (sampled VAE posterior, per-call noise) no run of ours can match;
    the distance is bounded by what was measured, and is far above the 1e-5 of the fixed
    draws, so the fixed-draw comparison above is the one that checks the code."""
    random = EXPECTED[f"{case}_mllm_random"]
    found = _rel(_features(case, "mllm"), random)
    assert 1e-3 < found <= 1.05 * RANDOM_DRAWS_REL[case], found


# rel between vislaw (float32) and the authors' code in its own bf16 (on CPU, draws fixed),
# measured on these twins; the random-init UNets amplify rounding far more than real ones would.
BF16_REL = {
    "sd_unet_128": 0.385,
    "sd_unet_128_up1": 0.832,
    "sdxl_128": 0.895,
    "sd_image_variations_128": 0.538,
    "dit_128": 0.0129,
    "sd3_128": 0.0077,
}


@pytest.mark.parametrize("case", sorted(BF16_REL))
def test_their_bf16_stays_within_the_measured_bound(case):
    """Their featurizers load and run in bf16; float32 cannot equal that. The distance is what
    was measured (asserted as a bound) and far above the float32 comparison's 1e-5."""
    found = _rel(_features(case, "mllm"), EXPECTED[f"{case}_mllm_bf16"])
    assert 1e-3 < found <= 1.05 * BF16_REL[case], found


def test_dinov2_transformers_5_interpolation_would_not_match():
    """The comparison sees the 4.38 position interpolation (issue 26, item 2): with transformers
    5's own interpolation back in place the 336 px case leaves the tolerance."""
    encoder = build_encoder(_member_spec("dinov2_336"))
    del encoder.model.embeddings.interpolate_pos_encoding  # the class's (transformers 5) method
    photo = Image.open(HERE / "photo.png").convert("RGB")
    with torch.no_grad():
        ours = encoder.encode_images([photo], "mllm").float().numpy()
    assert _rel(ours, EXPECTED["dinov2_336_mllm"]) > 100 * TOLERANCE


@pytest.mark.skipif(
    not os.environ.get("VISLAW_AUTHORS_PYTHONPATH"),
    reason="set VISLAW_AUTHORS_PYTHONPATH to the authors' stack (make_features.py's docstring)",
)
def test_the_committed_values_are_what_the_authors_stack_computes(tmp_path):
    """Where the authors' stack is at hand (their checkout and transformers 4.38.2, as
    make_features.py's docstring installs them), recompute features.npz and compare."""
    target = tmp_path / "features.npz"
    env = {**os.environ, "PYTHONPATH": os.environ["VISLAW_AUTHORS_PYTHONPATH"]}
    env["HF_HUB_OFFLINE"] = "1"
    cmd = [sys.executable, str(HERE / "make_features.py"), "features", str(target)]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=900)
    fresh = np.load(target)
    assert set(fresh) == set(EXPECTED)
    for key in EXPECTED:
        # bf16 CPU kernels vary with the thread count (rel 0.029 seen for SD-IV's random-init
        # UNet, which amplifies rounding); float32 keys agree to rounding.
        bound = 0.1 if key.endswith("_bf16") else 1e-6
        assert _rel(fresh[key], EXPECTED[key]) <= bound, key

"""The two feature protocols (docs/encoders.md): ``vislaw`` (default) and ``paper`` (the authors'
extraction). Each difference is pinned numerically on the tiny twins: the expected tensor comes
from the stock library call the protocol specifies (transformers processors, diffusers models
with the authors' conditioning), not from vislaw's code; given the same pixels the protocols'
model calls agree where the authors' code matched ours and differ where it did not.
tests/unit/encoders/test_authors_features.py compares ``paper`` with the authors' own code, end to
end.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from helpers.paths import DATA
from vislaw.config import ConfigError
from vislaw.encoders.base import (
    CLIP_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
)
from vislaw.encoders.diffusion import space_to_depth
from vislaw.encoders.preprocess import letterbox, square_image
from vislaw.encoders.registry import build_encoder, resolve_encoders


@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only, per test: a module-level set_grad_enabled(False) leaked into every test
    collected after this file (training tests then had no gradients)."""
    with torch.no_grad():
        yield


def _photo(width: int = 90, height: int = 60, seed: int = 0) -> Image.Image:
    """A smooth non-square image (smooth so resampling differences stay small)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, size=(6, 9, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)


def _spec(family: str, size: int, protocol: str, **kwargs) -> EncoderSpec:
    tiny = kwargs.pop("tiny", {})
    return EncoderSpec(
        name=f"{family}_t", family=family, input_size=size, tiny=tiny, protocol=protocol, seed=3,
        **kwargs,
    )  # fmt: skip


def _pair(family: str, size: int, **kwargs):
    """The same tiny twin (same seed, same weights) under both protocols."""
    return (
        build_encoder(_spec(family, size, "vislaw", **kwargs)),
        build_encoder(_spec(family, size, "paper", **kwargs)),
    )


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _pixels(size: int, seed: int = 1) -> torch.Tensor:
    return torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---- preprocessing, each geometry on its own ----------------------------------------------------
# The reference is the authors' pinned stack: arrays computed once with transformers 4.38.2's
# processors (tests/data/authors_stack/make_expected.py says how), not today's processors, which
# differ from 4.38's by about one grey level.
AUTHORS = np.load(DATA / "authors_stack" / "expected.npz")


def _squared(encoder, image: Image.Image) -> np.ndarray:
    """The encoder's ``paper`` square in 0..255, before normalising (what the fixtures hold)."""
    kwargs = encoder.geometry()
    return np.asarray(
        square_image(
            image,
            encoder.spec.input_size,
            kwargs["geometry"],
            kwargs["mean"],
            resize_to=kwargs.get("resize_to"),
            truncate_fill=kwargs.get("truncate_fill", False),
        )
    )


@pytest.mark.parametrize(
    "family,size,width,height,key",
    [
        ("clip", 112, 90, 60, "clip_crop_112"),
        ("dinov2", 224, 300, 200, "dinov2_crop_224"),
        ("dinov2", 112, 300, 200, "dinov2_stretch_112"),
        ("siglip", 128, 90, 60, "siglip_stretch_128"),
    ],
)
def test_paper_preprocessing_is_the_authors_processor_bit_for_bit(family, size, width, height, key):
    """CLIP: shortest edge + centre crop; DINOv2 at 224: 256 -> crop 224; DINOv2 at any other
    size: the authors' size/crop override, a stretch; SigLIP: a stretch."""
    patch = {"clip": 14, "dinov2": 14, "siglip": 16}[family]
    vis, pap = _pair(family, size, patch_size=patch)
    image = _photo(width, height)
    assert np.array_equal(_squared(pap, image), AUTHORS[key])
    assert not np.array_equal(_squared(vis, image), AUTHORS[key])  # letterbox differs


def test_paper_pixels_normalise_the_authors_square_with_the_family_stats():
    pap = build_encoder(_spec("dinov2", 224, "paper", patch_size=14))
    expected = (AUTHORS["dinov2_crop_224"] / 255.0 - np.array(IMAGENET_MEAN)) / np.array(
        IMAGENET_STD
    )
    ours = pap.preprocess([_photo(300, 200)])[0].permute(1, 2, 0).numpy()
    assert np.allclose(ours, expected, atol=1e-6)
    assert pap.preprocess([_photo(300, 200)]).is_contiguous()  # NCHW, as a processor's


def test_dinov2_paper_interpolates_positions_as_transformers_4_38():
    """A real checkpoint's 37x37 grid used at 336 px: 4.38's scale-factor bicubic under
    ``paper``; transformers 5's exact-size bicubic under ``vislaw`` (they differ)."""
    positions = torch.from_numpy(AUTHORS["dinov2_positions_37"])
    tokens = torch.zeros(1, 1 + 24 * 24, positions.shape[-1])
    found = {}
    for protocol in ("paper", "vislaw"):
        encoder = build_encoder(
            _spec("dinov2", 336, protocol, patch_size=14,
                  tiny={"hidden_size": 8, "num_attention_heads": 2, "num_hidden_layers": 1})
        )  # fmt: skip
        embeddings = encoder.model.embeddings
        embeddings.position_embeddings = torch.nn.Parameter(positions.clone())
        found[protocol] = embeddings.interpolate_pos_encoding(tokens, 336, 336)
    expected = torch.from_numpy(AUTHORS["dinov2_positions_37_to_24"])
    assert torch.allclose(found["paper"], expected, rtol=0, atol=1e-6)
    assert _rel(found["vislaw"], expected) > 1e-3


@pytest.mark.parametrize("family,size", [("clip", 112), ("dinov2", 112), ("dit", 256)])
def test_paper_c_score_pixels_are_the_authors_script(family, size):
    """Their extract_feature.py: img.resize((s, s)), then (x / 255 - 0.5) * 2 for every family."""
    image = _photo()
    expected = np.asarray(image.resize((size, size)), dtype=np.float32) / 255.0
    expected = torch.from_numpy((expected - 0.5) * 2).permute(2, 0, 1)[None]
    encoder = build_encoder(_spec(family, size, "paper"))
    assert torch.allclose(encoder.preprocess([image], "c_score"), expected, atol=1e-5)
    # vislaw: one geometry for both purposes, the family's own normalisation.
    vis = build_encoder(_spec(family, size, "vislaw"))
    assert torch.equal(vis.preprocess([image], "c_score"), vis.preprocess([image]))


def test_paper_pad_colour_is_truncated_like_llava():
    image = Image.new("RGB", (20, 10), (255, 255, 255))
    rounded = np.asarray(letterbox(image, 20, CLIP_MEAN))[0, 0]
    truncated = np.asarray(letterbox(image, 20, CLIP_MEAN, truncate_fill=True))[0, 0]
    assert tuple(truncated) == tuple(int(c * 255) for c in CLIP_MEAN)
    assert tuple(rounded) == tuple(round(c * 255) for c in CLIP_MEAN)
    assert (rounded.astype(int) - truncated.astype(int)).max() == 1


# ---- the model calls on the same pixels ---------------------------------------------------------
@pytest.mark.parametrize(
    "family,size,kwargs",
    [
        ("clip", 112, {"patch_size": 14}),
        ("siglip", 128, {"patch_size": 16}),
        ("dinov2", 112, {"patch_size": 14}),
        ("sd_unet", 128, {}),
    ],
)
def test_same_pixels_same_features_where_the_authors_matched(family, size, kwargs):
    vis, pap = _pair(family, size, **kwargs)
    pixels = _pixels(size)
    assert torch.equal(vis.encode(pixels), pap.encode(pixels))
    assert vis.feature_layout() == pap.feature_layout() == "tokens"


def _unet_input(encoder, pixels):
    vae = encoder.model["vae"]
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
    noise = torch.randn((1, *latents.shape[1:]), generator=torch.Generator().manual_seed(3))
    t = torch.full((pixels.shape[0],), 1, dtype=torch.long)
    return encoder.scheduler.add_noise(latents, noise.expand_as(latents), t), t


def _capture(module, run):
    out = {}
    handle = module.register_forward_hook(lambda _m, _i, o: out.setdefault("x", o))
    try:
        run()
    finally:
        handle.remove()
    return out["x"]


def test_sdxl_paper_runs_without_pooled_text_and_time_ids():
    from diffusers import UNet2DConditionModel

    vis, pap = _pair("sd_unet", 128, tiny={"variant": "sdxl"})
    pixels = _pixels(128)
    unet = pap.model["unet"]
    # Stock UNet of the same weights but without the text_time addition embedding.
    config = {**unet.config, "addition_embed_type": None}
    plain = UNet2DConditionModel.from_config(config)
    plain.load_state_dict(unet.state_dict(), strict=False)
    noisy, t = _unet_input(pap, pixels)
    context = pap.model.prompt_embeds.expand(2, -1, -1)
    expected = _capture(plain.up_blocks[0], lambda: plain(noisy, t, encoder_hidden_states=context))
    expected = expected.flatten(2).transpose(1, 2)
    assert torch.allclose(pap.encode(pixels), expected, atol=1e-5)
    assert _rel(vis.encode(pixels), expected) > 1e-3


def test_sd_image_variations_paper_conditions_on_bilinear_minus1_1_pixels():
    vis, pap = _pair("sd_image_variations", 128)
    pixels = _pixels(128)
    clip_in = F.interpolate(pixels, size=(224, 224), mode="bilinear")
    context = pap.model["image_encoder"](pixel_values=clip_in).image_embeds[:, None]
    unet = pap.model["unet"]
    noisy, t = _unet_input(pap, pixels)
    expected = _capture(unet.up_blocks[0], lambda: unet(noisy, t, encoder_hidden_states=context))
    expected = expected.flatten(2).transpose(1, 2)
    assert torch.allclose(pap.encode(pixels), expected, atol=1e-5)
    assert _rel(vis.encode(pixels), expected) > 1e-3


def authors_space_to_depth(tokens: torch.Tensor) -> torch.Tensor:
    """The authors' grouping, written out: (B, N, D) -> (B, D, h, w) -> 2x2 unfold on x then
    y -> channels (dx, dy, D) -> back to (B, h/2 * w/2, 4D) tokens."""
    batch, n, dim = tokens.shape
    side = int(n**0.5)
    maps = tokens.transpose(1, 2).reshape(batch, dim, side, side)
    cells = maps.unfold(3, 2, 2).unfold(2, 2, 2)  # (B, D, h/2, w/2, dx, dy)
    cells = cells.reshape(batch, dim, side // 2, side // 2, 4).permute(0, 4, 1, 2, 3)
    return cells.reshape(batch, 4 * dim, -1).transpose(1, 2)


def test_space_to_depth_orders_are_the_authors_and_a_permutation():
    tokens = torch.randn(2, 36, 5)
    ours = space_to_depth(tokens, 6, 6, order="dy,dx,D")
    theirs = space_to_depth(tokens, 6, 6, order="dx,dy,D")
    assert torch.equal(theirs, authors_space_to_depth(tokens))
    assert not torch.equal(ours, theirs)
    # Same numbers: the (0, 1) and (1, 0) cells' channel blocks swap.
    swap = torch.cat([ours[..., :5], ours[..., 10:15], ours[..., 5:10], ours[..., 15:]], -1)
    assert torch.equal(swap, theirs)


def test_dit_paper_drops_the_class_embedding_and_uses_their_channel_order():
    vis, pap = _pair("dit", 256)
    pixels = _pixels(256)
    stock = copy.deepcopy(pap.model["transformer"])
    for module in stock.modules():  # a class embedding of zero: timestep embedding alone
        if hasattr(module, "class_embedder"):
            module.class_embedder.embedding_table.weight.zero_()
    noisy, t = _unet_input(pap, pixels)
    labels = torch.zeros(2, dtype=torch.long)
    tokens = _capture(
        stock.transformer_blocks[-1], lambda: stock(noisy, timestep=t, class_labels=labels)
    )
    expected = authors_space_to_depth(tokens)
    assert torch.allclose(pap.encode(pixels), expected, atol=1e-5)
    assert _rel(vis.encode(pixels), expected) > 1e-3
    assert (vis.feature_layout(), pap.feature_layout()) == ("s2d2:dy,dx,D", "s2d2:dx,dy,D")
    # The C-score map is transposed (their extract_feature.py), the MLLM features are not.
    feats = pap.encode(pixels)
    rows, cols = pap.grid
    grid = feats.reshape(2, rows, cols, -1)
    assert torch.equal(
        pap.finish_c_features(feats).reshape(2, rows, cols, -1), grid.transpose(1, 2)
    )
    assert torch.equal(vis.finish_c_features(feats), feats)


def test_sd3_paper_zero_t5_tokens_as_long_as_clip_no_shift_clean_latent():
    """Their vendored diffusers pads T5's place with as many zero tokens as the CLIP tokenizer's
    length (77 for the real model; the twin's tokenizer is shorter, so 77 would be wrong)."""
    vis, pap = _pair("sd3", 256)
    pixels = _pixels(256)
    transformer, vae = pap.model["transformer"], pap.model["vae"]
    assert vae.config.shift_factor  # the twin has SD3's non-zero shift
    context = pap.model.prompt_embeds
    clip_tokens = vis.model.prompt_embeds.shape[1] - 8  # the vislaw twin: 8 zero T5 tokens
    assert clip_tokens != 77  # the twin's tokenizer length differs from the real model's
    assert context.shape[1] == 2 * clip_tokens and not context[:, clip_tokens:].any()
    assert torch.equal(context[:, :clip_tokens], vis.model.prompt_embeds[:, :clip_tokens])
    latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor  # no shift
    t = torch.full((2,), 1.0)
    _, tokens = _capture(
        transformer.transformer_blocks[-1],
        lambda: transformer(
            latents,  # t=1 "noising" returned the clean latent
            encoder_hidden_states=context.expand(2, -1, -1),
            pooled_projections=pap.model.pooled_projections.expand(2, -1),
            timestep=t,
        ),
    )
    expected = authors_space_to_depth(tokens)
    assert torch.allclose(pap.encode(pixels), expected, atol=1e-5)
    assert _rel(vis.encode(pixels), expected) > 1e-3


def test_transformer_block_is_configurable_for_both_readings():
    """The authors' training default up_ft_index 0 (first block) vs their C-score last block."""
    first = build_encoder(_spec("dit", 256, "paper", layer=0))
    last = build_encoder(_spec("dit", 256, "paper"))
    pixels = _pixels(256)
    assert first.encode(pixels).shape == last.encode(pixels).shape
    assert _rel(first.encode(pixels), last.encode(pixels)) > 1e-3
    with pytest.raises(ConfigError, match="layer"):
        build_encoder(_spec("dit", 256, "paper", layer=5)).encode(pixels)


# ---- config -------------------------------------------------------------------------------------
def test_protocol_default_and_per_encoder_override(minimal_config):
    from vislaw.config import check_config

    config = copy.deepcopy(minimal_config)
    config["features"] = {"protocol": "paper"}
    config["encoders"]["clip_b"]["protocol"] = "vislaw"
    specs = resolve_encoders(check_config(config))
    assert specs["clip224"].protocol == "paper" and specs["clip_b"].protocol == "vislaw"
    assert resolve_encoders(check_config(minimal_config))["clip224"].protocol == "vislaw"
    config["encoders"]["clip224"]["protocol"] = "authors"
    with pytest.raises(ConfigError, match="protocol"):
        check_config(config)


def test_fusion_members_must_share_the_fusion_protocol(minimal_config):
    from vislaw.config import check_config

    config = copy.deepcopy(minimal_config)
    config["encoders"]["dino"] = {
        "family": "dinov2",
        "tiny": True,
        "input_size": 56,
        "protocol": "paper",
    }
    config["encoders"]["clip224+dino"] = {"family": "fusion", "members": ["clip224", "dino"]}
    with pytest.raises(ConfigError, match="clip224\\+dino.protocol"):
        resolve_encoders(check_config(config))
    config["encoders"]["clip224"]["protocol"] = "paper"
    config["encoders"]["clip224+dino"]["protocol"] = "paper"
    spec = resolve_encoders(check_config(config))["clip224+dino"]
    assert spec.protocol == "paper" and build_encoder(spec).feature_layout() == "tokens+tokens"


def test_unknown_protocol_in_a_spec_is_refused():
    with pytest.raises(ValueError, match="protocol"):
        dataclasses.replace(_spec("clip", 56, "vislaw"), protocol="authors")


# ---- imported checkpoints: the protocol and layout guard ----------------------------------------
@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    from vislaw.vlm.random_llm import write_tiny_llm

    texts = ["a red square on a white background", "What colour is the shape? It is red."] * 3
    return write_tiny_llm(texts, tmp_path_factory.mktemp("tiny") / "llm", seed=0)


def _mm_projector(path, width: int, seed: int = 0):
    from vislaw.vlm.llava import write_llava_projector
    from vislaw.vlm.projector import build_projector

    torch.manual_seed(seed)
    write_llava_projector(build_projector("mlp2x_gelu", width, 32).state_dict(), path)
    return path


DIT = dict(family="dit", input_size=256, tiny={}, seed=3)  # 8x8x64, space-to-depth'd


def test_import_records_protocol_and_layout_and_a_matching_run_loads(llm_dir, tmp_path):
    from vislaw.vlm.checkpoints import VlmInfo
    from vislaw.vlm.inference import load_vlm
    from vislaw.vlm.llava import import_llava

    spec = EncoderSpec("dit", protocol="paper", **DIT)
    src = _mm_projector(tmp_path / "mm_projector.bin", 64)
    out = import_llava(src, tmp_path / "s1", spec, 1, llm=str(llm_dir), protocol="paper")
    info = VlmInfo.read(out)
    assert (info.feature_protocol, info.feature_layout) == ("paper", "s2d2:dx,dy,D")
    assert not info.protocol_override
    assert load_vlm(out).model.encoder.feature_layout() == "s2d2:dx,dy,D"


def test_permuted_columns_are_caught_even_with_the_protocol_override(llm_dir, tmp_path):
    """A projector trained on the authors' (dx, dy, D) columns fed our (dy, dx, D) features: the
    width agrees and the weights cannot tell, so the recorded layout must."""
    from vislaw.vlm.checkpoints import VlmInfo, check_feature_match
    from vislaw.vlm.inference import load_vlm
    from vislaw.vlm.llava import import_llava

    ours = EncoderSpec("dit", protocol="vislaw", **DIT)
    src = _mm_projector(tmp_path / "mm_projector.bin", 64)
    for override in (False, True):
        with pytest.raises(ValueError, match="laid out as 's2d2:dx,dy,D'.*'s2d2:dy,dx,D'"):
            import_llava(
                src, tmp_path / "x", ours, 1, llm=str(llm_dir), protocol="paper",
                allow_protocol_mismatch=override,
            )  # fmt: skip
    assert not (tmp_path / "x").exists()
    # A folder imported right, then run with the other protocol's features (a hand-edited
    # vlm.json, or a stage-2 run whose config changed): load_vlm and the trainer's check stop.
    paper = dataclasses.replace(ours, protocol="paper")
    out = import_llava(src, tmp_path / "s1", paper, 1, llm=str(llm_dir), protocol="paper")
    info = VlmInfo.read(out)
    with pytest.raises(ValueError, match="laid out as"):
        check_feature_match(info, ours, out, channels=64)
    edited = dataclasses.replace(info, encoder=ours).to_json()
    (out / "vlm.json").write_text(edited)
    with pytest.raises(ValueError, match="protocol: paper"):
        load_vlm(out)


def test_protocol_mismatch_stops_unless_explicitly_overridden(llm_dir, tmp_path):
    from vislaw.vlm.checkpoints import VlmInfo
    from vislaw.vlm.inference import load_vlm
    from vislaw.vlm.llava import import_llava

    clip = EncoderSpec("clip_t", "clip", input_size=56, tiny={}, patch_size=14)  # vislaw
    src = _mm_projector(tmp_path / "mm_projector.bin", 32)
    with pytest.raises(ValueError, match="needs protocol 'paper'.*--allow-protocol-mismatch"):
        import_llava(src, tmp_path / "a", clip, 1, llm=str(llm_dir), protocol="paper")
    out = import_llava(
        src, tmp_path / "b", clip, 1, llm=str(llm_dir), protocol="paper",
        allow_protocol_mismatch=True,
    )  # fmt: skip
    info = VlmInfo.read(out)
    assert info.protocol_override and info.feature_protocol == "paper"
    assert load_vlm(out).info.encoder.protocol == "vislaw"


def test_projector_width_is_checked(llm_dir, tmp_path):
    from vislaw.vlm.inference import load_vlm
    from vislaw.vlm.llava import import_llava

    spec = EncoderSpec("dit", protocol="paper", **DIT)
    src = _mm_projector(tmp_path / "mm_projector.bin", 48)
    out = import_llava(src, tmp_path / "s1", spec, 1, llm=str(llm_dir), protocol="paper")
    with pytest.raises(ValueError, match="projector takes 48 channels.*gives 64"):
        load_vlm(out)


def test_import_cli_defaults_to_the_paper_protocol(llm_dir, tmp_path, minimal_config):
    import yaml

    from vislaw.vlm.__main__ import main
    from vislaw.vlm.checkpoints import VlmInfo

    src = _mm_projector(tmp_path / "mm_projector.bin", 32)
    minimal_config["encoders"]["clip224"]["protocol"] = "paper"
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(minimal_config))
    args = ["import-llava", "--stage", "1", "--src", str(src), "--config", str(config)]
    args += ["--encoder", "clip224", "--out", str(tmp_path / "o"), "--llm", str(llm_dir)]
    main(args)
    assert VlmInfo.read(tmp_path / "o").feature_protocol == "paper"
    minimal_config["encoders"]["clip224"]["protocol"] = "vislaw"
    config.write_text(yaml.safe_dump(minimal_config))
    with pytest.raises(ValueError, match="needs protocol 'paper'"):
        main([*args[:-4], "--out", str(tmp_path / "p"), "--llm", str(llm_dir)])


# ---- both protocols through the workflow's feature and C-score entry points, every family -------
DEMO_FAMILIES = ["clip224", "siglip_b", "dinov2", "convnext", "sd15", "sdxl", "sdim", "dit", "sd3"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, project_root):
    """The demo config on a small synthetic SPair set (non-square images), written for each
    protocol as the rules' entry points read it (features.protocol)."""
    import yaml

    from vislaw.config import read_yaml
    from vislaw.data.synthetic import generate_demo_data

    root = tmp_path_factory.mktemp("demo_protocols")
    config = read_yaml(project_root / "config/demo.yaml")
    settings = dict(config["data"]["synthetic"])
    settings.update(
        n_pretrain=1, n_instruct=1, n_benchmark_questions=1, n_spair_images_per_category=3,
        n_spair_pairs_per_category=3, spair_categories=["aeroplane", "bird"],
    )  # fmt: skip
    generate_demo_data(root / "data", settings, 0, progress=False)
    paths = {}
    for protocol in ("vislaw", "paper"):
        config["data"]["root"] = str(root / "data")
        config["data"]["synthetic"] = settings
        config["features"] = {**config["features"], "protocol": protocol}
        paths[protocol] = root / f"{protocol}.yaml"
        paths[protocol].write_text(yaml.safe_dump(config))
    return root, paths


def _features_and_c(demo_run, name: str, protocol: str) -> tuple[dict, dict]:
    from vislaw.features.cli import main as features_main
    from vislaw.io.hdf5 import open_features
    from vislaw.scores.correspondence.cli import main as c_main
    from vislaw.scores.correspondence.table import read_rows

    root, configs = demo_run
    out = root / protocol / f"{name}.h5"
    if not out.is_file():
        out.parent.mkdir(exist_ok=True)
        features_main(["--config", str(configs[protocol]), "--encoder", name, "--out", str(out)])
    row_path = root / protocol / f"{name}.csv"
    args = ["--features", str(out), "--spair-root", str(root / "data/SPair-71k")]
    c_main([*args, "--out", str(row_path), "--symmetry", "synthetic"])
    with open_features(out) as handle:
        meta = dict(handle.meta)
    return meta, read_rows(row_path)[0]


@pytest.mark.parametrize("name", DEMO_FAMILIES)
def test_both_protocols_run_features_and_c_score_for_every_family(demo_run, name):
    import h5py

    metas, rows = {}, {}
    for protocol in ("vislaw", "paper"):
        metas[protocol], rows[protocol] = _features_and_c(demo_run, name, protocol)
        assert metas[protocol]["protocol"] == rows[protocol]["protocol"] == protocol
        assert 0 <= float(rows[protocol]["pck10_image"]) <= 1
    assert metas["vislaw"]["geometry"] == "letterbox" and metas["paper"]["geometry"] == "stretch"
    root = demo_run[0]
    with (
        h5py.File(root / "vislaw" / f"{name}.h5") as a,
        h5py.File(root / "paper" / f"{name}.h5") as b,
    ):
        assert a["features"].shape == b["features"].shape
        assert not np.array_equal(a["features"][()], b["features"][()])


def test_fusion_of_paper_members_and_mixed_protocols_refused(demo_run):
    from vislaw.features import fuse_feature_files
    from vislaw.io.hdf5 import open_features

    root = demo_run[0]
    for protocol in ("vislaw", "paper"):
        _features_and_c(demo_run, "clip224", protocol)
        _features_and_c(demo_run, "dinov2", protocol)
    members = [root / "paper" / "clip224.h5", root / "paper" / "dinov2.h5"]
    fuse_feature_files(members, root / "paper" / "fused.h5")
    with open_features(root / "paper" / "fused.h5") as handle:
        assert handle.meta["protocol"] == "paper"
    mixed = [root / "paper" / "clip224.h5", root / "vislaw" / "dinov2.h5"]
    with pytest.raises(ValueError, match="different protocols"):
        fuse_feature_files(mixed, root / "mixed.h5")


def test_protocol_effects_cli_measures_each_difference(capsys, project_root):
    from vislaw.studies.protocol_effects import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    capsys.readouterr()
    config = str(project_root / "config/demo.yaml")
    main(["--config", config, "--encoders", "clip224", "dit", "--images", "2"])
    lines = capsys.readouterr().out.strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])
    }
    assert float(rows["clip224"]["model"]) == 0 and float(rows["clip224"]["pixels"]) > 0.1
    dit = rows["dit"]
    assert dit["permuted"] == "True"
    # Without the permutation only the class embedding differs: smaller, but not zero.
    assert 0 < float(dit["model_same_order"]) < float(dit["model"])


@pytest.mark.parametrize("aspect,protocol", [("pad", "paper"), ("square", "vislaw")])
def test_stage2_import_reads_the_checkpoints_own_aspect_ratio(tmp_path, aspect, protocol):
    """LLaVA-1.5's releases say image_aspect_ratio "pad" (our letterbox), the authors' runs
    "square": an import under the other protocol stops before any weight is read."""
    import json

    from vislaw.vlm.llava import import_llava

    folder = tmp_path / "llava"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"image_aspect_ratio": aspect}))
    spec = EncoderSpec("clip_t", "clip", input_size=56, tiny={}, patch_size=14, protocol=protocol)
    with pytest.raises(ValueError, match=f"image_aspect_ratio '{aspect}'"):
        import_llava(folder, tmp_path / "out", spec, 2)
    # With the override the check is skipped (here the missing weights then stop it).
    with pytest.raises(FileNotFoundError, match="weights"):
        import_llava(folder, tmp_path / "out", spec, 2, allow_protocol_mismatch=True)

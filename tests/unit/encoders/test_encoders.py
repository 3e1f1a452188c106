"""The encoder zoo: every family's tiny twin, the grid arithmetic of the paper's encoders, the
real loading path (on a local folder in the hub layout), fusion, and the diffusion features.

Everything runs on CPU with seeded random-init twins built by the families' own code.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from helpers.demo_encoders import DEMO_CONFIG, DEMO_SPECS, random_images
from helpers.hub_twins import REAL_DEPTH_UNET, sd_layout, write_text_encoder
from helpers.paths import ROOT
from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.diffusion import TINY_TEXT, space_to_depth
from vislaw.encoders.fusion import FusionEncoder
from vislaw.encoders.registry import FAMILIES, build_encoder, conda_env, token_grid
from vislaw.pipeline import load_checked_config

PAPER_CONFIG, PAPER_SPECS = load_checked_config(ROOT / "config.yaml")

# The demo twins' grids x channels, as documented in config/demo.yaml and docs/encoders.md.
DEMO_SHAPES = {
    "clip224": (8, 8, 32),
    "clip336": (12, 12, 32),
    "openclip": (8, 8, 32),
    "siglip_b": (8, 8, 32),
    "dinov2": (8, 8, 32),
    "convnext": (8, 8, 128),
    "convllava_768": (8, 8, 128),
    "convllava_1024": (12, 12, 128),
    "convllava_1536": (16, 16, 128),
    "sd15": (16, 16, 32),
    "sdxl": (16, 16, 32),
    "sdim": (16, 16, 32),
    "dit": (8, 8, 64),
    "sd3": (8, 8, 64),
    "dinov2_reg": (8, 8, 32),
    "timm_vit_reg": (8, 8, 32),
    "laion_convnext": (8, 8, 256),
    "clip224+dinov2": (8, 8, 64),
}
# The paper's grids (the paper's Table; docs/encoders.md; ConvNeXt at 512 px without the fifth stage).
PAPER_GRIDS = {
    "clip224": 16,
    "clip336": 24,
    "openclip": 16,
    "siglip_b": 14,
    "siglip_l": 16,
    "siglip2_l": 16,
    "dinov2": 16,
    "dinov2_336": 24,
    "sd15": 24,
    "sd21": 24,
    "sdim": 24,
    "sdxl": 32,
    "dit": 16,
    "sd3": 16,
    "convnext": 16,
    "convllava_768": 12,  # fifth stage: input / 64
    "convllava_1024": 16,
    "convllava_1536": 24,
    "clip224+dinov2": 16,
    "clip336+dinov2": 24,
}
DIFFUSION = ["sd15", "sdxl", "sdim", "dit", "sd3"]


# ---- every tiny twin ---------------------------------------------------------------------------
def test_demo_config_covers_every_family():
    """Every registered family has a demo twin (so the demo and the tests below run it); the
    documented shapes are checked where given, a new family needs no entry here."""
    assert {s.family for s in DEMO_SPECS.values()} == set(FAMILIES)
    assert set(DEMO_SHAPES) <= set(DEMO_SPECS)


@pytest.mark.parametrize("name", sorted(DEMO_SPECS))
def test_tiny_twin_grid_channels_and_seeded(name):
    spec = DEMO_SPECS[name]
    rows, cols = token_grid(spec)  # what the family promises before building anything
    if name in DEMO_SHAPES:  # the grids x channels documented in config/demo.yaml
        assert (rows, cols) == DEMO_SHAPES[name][:2]
    channels = DEMO_SHAPES[name][2] if name in DEMO_SHAPES else None
    assert rows >= 8 and cols >= 8, "the C score needs spatial resolution"
    images = random_images(2)
    first = build_encoder(spec)
    feats = first.encode_images(images)
    channels = channels or first.channels
    assert first.channels == channels
    assert feats.shape == (2, rows * cols, channels)
    assert torch.isfinite(feats).all()
    again = build_encoder(spec).encode_images(images)
    torch.testing.assert_close(again, feats, rtol=0, atol=0)
    assert not torch.allclose(feats[0], feats[1]), "features must depend on the image"


@pytest.mark.parametrize("name", ["clip224", "siglip_b", "convnext", "sd15", "dit", "sd3"])
def test_seed_changes_the_twin(name):
    spec = DEMO_SPECS[name]
    images = random_images(1)
    base = build_encoder(spec).encode_images(images)
    other = build_encoder(dataclasses.replace(spec, seed=spec.seed + 1)).encode_images(images)
    assert not torch.allclose(base, other)


def test_importing_the_registry_stays_cheap():
    code = "import sys, vislaw.encoders.registry; print(sorted({'torch', 'transformers', "
    code += "'diffusers'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---- the paper's encoders: arithmetic only, no weights -----------------------------------------
@pytest.mark.parametrize("name", sorted(PAPER_GRIDS))
def test_paper_grid_matches_design_table(name):
    side = PAPER_GRIDS[name]
    assert token_grid(PAPER_SPECS[name]) == (side, side)


def test_paper_config_names_every_encoder_of_the_table():
    assert set(PAPER_SPECS) == set(PAPER_GRIDS)


@pytest.mark.parametrize(("size", "tokens"), [(768, 144), (1024, 256), (1536, 576), (512, 64)])
def test_convnext_fifth_stage_token_counts(size, tokens):
    spec = dataclasses.replace(PAPER_SPECS["convnext"], input_size=size, fifth_stage=True)
    rows, cols = token_grid(spec)
    assert rows * cols == tokens


def test_conda_env_per_family():
    expected = {
        "clip224": "transformers",
        "siglip_b": "transformers",
        "dinov2": "transformers",
        "convnext": "transformers",
        "sd15": "diffusers",
        "sdim": "diffusers",
        "sdxl": "diffusers",
        "dit": "diffusers",
        "sd3": "diffusers",
        "clip224+dinov2": "transformers",
    }
    assert {n: conda_env(PAPER_SPECS[n]) for n in expected} == expected
    mixed = EncoderSpec("f", "fusion", members=(PAPER_SPECS["clip336"], PAPER_SPECS["sd15"]))
    assert conda_env(mixed) == "diffusers"


def test_sdxl_variant_from_options_or_model_id():
    sdxl = PAPER_SPECS["sdxl"]
    local = dataclasses.replace(sdxl, model_id="/models/my-unet")
    assert token_grid(local) == (16, 16)  # a local folder at 512 px is taken as SD 1.x/2.x
    as_xl = dataclasses.replace(local, options={"variant": "sdxl"})
    assert token_grid(as_xl) == (32, 32)  # ... unless options.variant says SDXL
    with pytest.raises(ConfigError) as info:
        token_grid(dataclasses.replace(local, options={"variant": "sd4"}))
    assert info.value.key == "encoders.sdxl.options.variant"


@pytest.mark.parametrize(
    ("name", "change", "key"),
    [
        ("sd15", {"input_size": 100}, "encoders.sd15.input_size"),  # not a multiple of 8
        ("sd15", {"up_block": 4}, "encoders.sd15.up_block"),  # SD has up blocks 0..3
        ("dit", {"input_size": 520}, "encoders.dit.input_size"),  # 65 latent -> odd tokens
    ],
)
def test_impossible_sizes_are_config_errors(name, change, key):
    entry = dict(PAPER_CONFIG["encoders"][name], **change)
    config = dict(PAPER_CONFIG, encoders={name: entry})
    with pytest.raises(ConfigError) as info:
        load_checked_config(config)
    assert info.value.key == key


def test_up_block_index_moves_the_grid():
    sd15 = PAPER_SPECS["sd15"]
    sides = [token_grid(dataclasses.replace(sd15, up_block=i))[0] for i in range(4)]
    assert sides == [24, 48, 96, 96]  # the last up block has no upsampler


# ---- fusion ------------------------------------------------------------------------------------
def test_fusion_concatenates_members_each_run_once():
    fusion = build_encoder(DEMO_SPECS["clip224+dinov2"])
    assert isinstance(fusion, FusionEncoder)
    calls = {m.spec.name: 0 for m in fusion.members}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    for member in fusion.members:
        member.model.register_forward_hook(counter(member.spec.name))
    images = random_images(3)
    feats = fusion.encode_images(images)
    assert calls == {"clip224": 1, "dinov2": 1}
    assert fusion.grid == (8, 8)
    assert fusion.channels == sum(m.channels for m in fusion.members) == feats.shape[-1]
    # The concatenation is member by member, each with its own preprocessing.
    clip, dino = fusion.members
    torch.testing.assert_close(feats[..., : clip.channels], clip.encode_images(images))
    torch.testing.assert_close(feats[..., clip.channels :], dino.encode_images(images))
    pixels = fusion.preprocess(images)
    torch.testing.assert_close(pixels[1], dino.preprocess(images))
    assert not torch.allclose(pixels[0], pixels[1])  # CLIP vs ImageNet mean/std


def test_fusion_of_different_grids_is_refused():
    clip = DEMO_SPECS["clip224"]  # 8x8
    dino = dataclasses.replace(DEMO_SPECS["dinov2"], input_size=168)  # 12x12
    spec = EncoderSpec("bad", "fusion", members=(clip, dino))
    with pytest.raises(ConfigError, match="token grids differ"):
        FusionEncoder(spec)
    entries = dict(DEMO_CONFIG["encoders"])
    entries["dinov2"] = dict(entries["dinov2"], input_size=168)
    with pytest.raises(ConfigError) as info:
        load_checked_config(dict(DEMO_CONFIG, encoders=entries))
    assert info.value.key == "encoders.clip224+dinov2.members"


def test_fusion_members_may_differ_in_input_size():
    clip = DEMO_SPECS["clip224"]  # 112 / 14 = 8
    siglip = DEMO_SPECS["siglip_b"]  # 128 / 16 = 8
    fusion = FusionEncoder(EncoderSpec("c+s", "fusion", members=(clip, siglip)))
    pixels = fusion.preprocess(random_images(2))
    assert [p.shape[-1] for p in pixels] == [112, 128]
    assert fusion.encode(pixels).shape == (2, 64, 64)


# ---- diffusion features ------------------------------------------------------------------------
@pytest.mark.parametrize("name", DIFFUSION)
def test_diffusion_features_depend_on_image_and_noise_is_seeded(name):
    encoder = build_encoder(DEMO_SPECS[name])
    a, b = random_images(2)
    feats = encoder.encode_images([a, b, a])
    assert not torch.allclose(feats[0], feats[1])
    torch.testing.assert_close(feats[0], feats[2], rtol=0, atol=1e-6)
    # The noise map is shared by all images: a batch of one gives the same features.
    torch.testing.assert_close(encoder.encode_images([a])[0], feats[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(encoder.encode_images([a, b]), feats[:2], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", DIFFUSION)
def test_diffusion_timestep_is_used(name):
    spec = DEMO_SPECS[name]
    images = random_images(1)
    t1 = build_encoder(spec).encode_images(images)
    t500 = build_encoder(dataclasses.replace(spec, timestep=500)).encode_images(images)
    assert not torch.allclose(t1, t500, atol=1e-3)


def test_unet_forward_stops_at_the_hooked_block():
    encoder = build_encoder(DEMO_SPECS["sd15"])
    unet = encoder.model["unet"]
    ran = []
    unet.up_blocks[1].register_forward_hook(lambda *_: ran.append("up1"))
    unet.up_blocks[0].register_forward_hook(lambda *_: ran.append("up0"))
    encoder.encode_images(random_images(1))
    assert ran == ["up0"]


def test_sdxl_twin_has_text_time_conditioning():
    encoder = build_encoder(DEMO_SPECS["sdxl"])
    assert encoder.model["unet"].config.addition_embed_type == "text_time"
    size = DEMO_SPECS["sdxl"].input_size
    assert encoder.model.time_ids.tolist() == [[size, size, 0, 0, size, size]]
    # Two text encoders' penultimate layers, concatenated.
    assert encoder.model.prompt_embeds.shape[-1] == 2 * TINY_TEXT["hidden_size"]
    plain = build_encoder(DEMO_SPECS["sd15"])
    assert plain.model["unet"].config.addition_embed_type is None


def test_sd_image_variations_conditions_on_the_image():
    encoder = build_encoder(DEMO_SPECS["sdim"])
    pixels = encoder.preprocess(random_images(2))
    context, added = encoder._unet_condition(pixels)
    assert added is None and context.shape[:2] == (2, 1)
    assert not torch.allclose(context[0], context[1])


def test_sd3_context_is_clip_padded_then_zero_t5_tokens():
    encoder = build_encoder(DEMO_SPECS["sd3"])
    context = encoder.model.prompt_embeds
    joint = encoder.model["transformer"].config.joint_attention_dim
    clip_width = 2 * TINY_TEXT["hidden_size"]
    length = TINY_TEXT["max_position_embeddings"]
    assert context.shape == (1, length + 8, joint)
    assert context[:, :length, :clip_width].abs().sum() > 0
    assert context[:, :length, clip_width:].abs().sum() == 0  # zero padding to T5's width
    assert context[:, length:].abs().sum() == 0  # where T5's tokens would be
    assert encoder.model.pooled_projections.shape == (1, 2 * TINY_TEXT["projection_dim"])


def test_space_to_depth_stacks_2x2_cells():
    rows, cols, dim = 4, 6, 3
    grid = torch.arange(rows * cols * dim, dtype=torch.float32).reshape(1, rows, cols, dim)
    out = space_to_depth(grid.reshape(1, rows * cols, dim), rows, cols)
    assert out.shape == (1, 2 * 3, 4 * dim)
    # Output token (1, 2) holds input cells (2..3, 4..5) in (dy, dx) order.
    cell = out[0, 1 * 3 + 2].reshape(2, 2, dim)
    torch.testing.assert_close(cell, grid[0, 2:4, 4:6])


# ---- ConvNeXt's fifth stage --------------------------------------------------------------------
def test_convnext_fifth_stage_is_a_stock_trainable_stage():
    from transformers import ConvNextModel

    encoder = build_encoder(DEMO_SPECS["convnext"])
    stage = encoder.fifth_stage
    assert stage is encoder.model.encoder.stages[4]
    assert encoder.model.config.num_stages == 5
    assert encoder.model.config.hidden_sizes[-1] == 2 * encoder.model.config.hidden_sizes[-2]
    # Part of the model (moves, saves with it) and can be unfrozen for training.
    names = {id(p) for p in encoder.model.parameters()}
    assert all(id(p) in names for p in stage.parameters())
    stage.requires_grad_(True)
    assert all(p.requires_grad for p in stage.parameters())
    # The result is a stock five-stage ConvNextModel: the stock class loads it strictly.
    ConvNextModel(encoder.model.config).load_state_dict(encoder.model.state_dict(), strict=True)
    plain = build_encoder(dataclasses.replace(DEMO_SPECS["convnext"], fifth_stage=False))
    assert plain.fifth_stage is None and plain.grid == (16, 16)


# ---- the real loading path, on local folders in the hub layout ---------------------------------


@pytest.mark.parametrize("name", ["clip224", "siglip_b", "dinov2"])
def test_real_path_vit_loads_saved_twin(name, tmp_path):
    spec = DEMO_SPECS[name]
    tiny = build_encoder(spec)
    tiny.model.save_pretrained(tmp_path)
    real = build_encoder(dataclasses.replace(spec, tiny=None, model_id=str(tmp_path)))
    images = random_images(2)
    torch.testing.assert_close(real.encode_images(images), tiny.encode_images(images))


def test_real_path_convnext_appends_fifth_stage(tmp_path):
    spec = dataclasses.replace(DEMO_SPECS["convnext"], fifth_stage=False)
    build_encoder(spec).model.save_pretrained(tmp_path)
    real = dataclasses.replace(spec, tiny=None, model_id=str(tmp_path), input_size=256)
    plain = build_encoder(real)
    assert plain.grid == (8, 8) and plain.encode_images(random_images(1)).shape == (1, 64, 64)
    fifth = build_encoder(dataclasses.replace(real, fifth_stage=True))
    assert fifth.grid == (4, 4) and fifth.encode_images(random_images(1)).shape == (1, 16, 128)
    # A tower that already has five stages is refused (its grid would be /64 already).
    fifth.model.save_pretrained(tmp_path / "five")
    with pytest.raises(ConfigError, match="already has 5 stages"):
        build_encoder(dataclasses.replace(real, model_id=str(tmp_path / "five"), fifth_stage=True))


def _real_depth_twin(name: str, variant: str) -> EncoderSpec:
    spec = DEMO_SPECS[name]
    return dataclasses.replace(spec, tiny={**spec.tiny, "unet": REAL_DEPTH_UNET[variant]})


@pytest.mark.parametrize("name", ["sd15", "sdxl"])
def test_real_path_sd_unet_loads_hub_layout(name, tmp_path):
    variant = "sdxl" if name == "sdxl" else "sd"
    spec = _real_depth_twin(name, variant)
    tiny = build_encoder(spec)
    assert tiny.grid == ((8, 8) if variant == "sdxl" else (4, 4))
    prompt, pooled = sd_layout(tiny, tmp_path, variant)
    real_spec = dataclasses.replace(
        spec, tiny=None, model_id=str(tmp_path), options={"variant": variant}
    )
    real = build_encoder(real_spec)
    # The empty prompt went through the saved tokenizer(s) and text encoder(s).
    torch.testing.assert_close(real.model.prompt_embeds, prompt)
    if pooled is not None:
        torch.testing.assert_close(real.model.text_embeds, pooled)
    # With the twin's conditioning, VAE, UNet, scheduler and noise give the twin's features.
    for buffer, value in tiny.model.named_buffers(recurse=False):
        setattr(real.model, buffer, value)
    images = random_images(2)
    torch.testing.assert_close(real.encode_images(images), tiny.encode_images(images))
    # The UNet contradicts a wrong variant, naming the key.
    wrong = {"variant": "sd" if name == "sdxl" else "sdxl"}
    with pytest.raises(ConfigError) as info:
        build_encoder(dataclasses.replace(real_spec, options=wrong))
    assert info.value.key == f"encoders.{name}.options.variant"


def test_real_path_sd_image_variations_loads_hub_layout(tmp_path):
    spec = _real_depth_twin("sdim", "sd")
    tiny = build_encoder(spec)
    for part in ("vae", "unet", "image_encoder"):
        tiny.model[part].save_pretrained(tmp_path / part)
    tiny.scheduler.save_pretrained(tmp_path / "scheduler")
    real = build_encoder(dataclasses.replace(spec, tiny=None, model_id=str(tmp_path)))
    images = random_images(2)
    torch.testing.assert_close(real.encode_images(images), tiny.encode_images(images))


def test_real_path_dit_loads_hub_layout(tmp_path):
    spec = DEMO_SPECS["dit"]
    tiny = build_encoder(spec)
    for part in ("vae", "transformer"):
        tiny.model[part].save_pretrained(tmp_path / part)
    tiny.scheduler.save_pretrained(tmp_path / "scheduler")
    real = build_encoder(dataclasses.replace(spec, tiny=None, model_id=str(tmp_path)))
    images = random_images(2)
    torch.testing.assert_close(real.encode_images(images), tiny.encode_images(images))


def test_real_path_sd3_loads_hub_layout(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    spec = DEMO_SPECS["sd3"]
    tiny = build_encoder(spec)
    for part in ("vae", "transformer"):
        tiny.model[part].save_pretrained(tmp_path / part)
    FlowMatchEulerDiscreteScheduler().save_pretrained(tmp_path / "scheduler")
    write_text_encoder(tmp_path, "", projected=True)
    write_text_encoder(tmp_path, "_2", projected=True)
    real_spec = dataclasses.replace(spec, tiny=None, model_id=str(tmp_path))
    real = build_encoder(dataclasses.replace(real_spec, options={"t5_tokens": 8}))
    assert real.model.prompt_embeds.shape == tiny.model.prompt_embeds.shape
    assert real.model.pooled_projections.shape == tiny.model.pooled_projections.shape
    for buffer, value in tiny.model.named_buffers(recurse=False):
        setattr(real.model, buffer, value)
    images = random_images(2)
    torch.testing.assert_close(real.encode_images(images), tiny.encode_images(images))
    # The real default leaves room for T5's 256 tokens, as the pipeline without T5 does.
    assert build_encoder(real_spec).model.prompt_embeds.shape[1] == 8 + 256


def test_real_path_refuses_a_unet_the_arithmetic_does_not_fit(tmp_path):
    tiny = build_encoder(DEMO_SPECS["sd15"])  # one downsampling; real SD has three
    tiny.model["unet"].save_pretrained(tmp_path / "unet")
    spec = dataclasses.replace(DEMO_SPECS["sd15"], tiny=None, model_id=str(tmp_path))
    with pytest.raises(ConfigError, match="downsampling count is 1"):
        build_encoder(spec)


def test_unknown_tiny_keys_of_a_diffusion_twin_are_refused():
    entry = {"family": "sd_unet", "tiny": {"unnet": {"layers_per_block": 2}}, "input_size": 128}
    config = dict(DEMO_CONFIG, encoders={"sd15": entry})
    with pytest.raises(ConfigError, match="unnet") as info:
        load_checked_config(config)
    assert info.value.key == "encoders.sd15.tiny"

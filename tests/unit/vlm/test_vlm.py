"""The MLLM: projector types, the image-token splice (positions and count), the tiny LLM as
a from_pretrained folder, and checkpoint round trips (ours and LLaVA's released format)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from helpers.llava_samples import draw
from helpers.tiny_vlm import SPEC, make_model, vlm_info
from vislaw.encoders.base import EncoderSpec
from vislaw.encoders.registry import build_encoder
from vislaw.vlm.chat_templates import IGNORE_INDEX, IMAGE_TOKEN_INDEX
from vislaw.vlm.checkpoints import VlmInfo, spec_from_dict, spec_to_dict, write_stage
from vislaw.vlm.inference import load_vlm
from vislaw.vlm.llava import import_llava, read_llava_projector, write_llava_projector
from vislaw.vlm.model import (
    LlavaStyleModel,
    causal_lm_loss,
    preprocess_images,
    splice_image_tokens,
)
from vislaw.vlm.projector import build_projector, infer_projector
from vislaw.vlm.random_llm import write_tiny_llm

TEXTS = ["a red square on a white background", "What colour is the shape? It is red."] * 3


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory) -> Path:
    return write_tiny_llm(TEXTS, tmp_path_factory.mktemp("tiny") / "llm", seed=0)


@pytest.fixture(scope="module")
def encoder():
    return build_encoder(SPEC)


# ---- projector --------------------------------------------------------------------------------
def test_projector_types_and_llava_parameter_names():
    mlp = build_projector("mlp2x_gelu", 32, 64)
    assert sorted(mlp.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert isinstance(mlp[1], torch.nn.GELU)
    assert infer_projector(mlp.state_dict()) == ("mlp2x_gelu", 32, 64)
    deep = build_projector("mlp3x_gelu", 8, 16)
    assert infer_projector(deep.state_dict()) == ("mlp3x_gelu", 8, 16)
    linear = build_projector("linear", 8, 16)
    assert infer_projector(linear.state_dict()) == ("linear", 8, 16)
    assert build_projector("mlp2x_gelu", 32, 64)(torch.zeros(2, 5, 32)).shape == (2, 5, 64)
    with pytest.raises(ValueError, match="unknown projector type"):
        build_projector("mlp2x_relu", 8, 16)


# ---- splice -----------------------------------------------------------------------------------
def _embed(ids: torch.Tensor) -> torch.Tensor:
    """Token id t -> a vector filled with t (so positions are readable from the output)."""
    return ids.float().unsqueeze(-1).expand(*ids.shape, 4).clone()


def test_splice_puts_image_tokens_at_the_placeholder_right_padded():
    pad = 0
    ids = torch.tensor([[1, 5, IMAGE_TOKEN_INDEX, 6, 7], [1, 8, 9, pad, pad]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    labels = torch.tensor([[-100, -100, -100, 6, 7], [-100, 8, 9, -100, -100]])
    image = 100 + torch.arange(3).float().view(1, 3, 1).expand(1, 3, 4)  # 3 tokens: 100,101,102
    out = splice_image_tokens(ids, mask, labels, _embed, image, [0, None], "right")
    # Sample 0: 4 text tokens + 3 image tokens = 7; sample 1: 3 tokens, padded to 7.
    assert out.embeds.shape == (2, 7, 4)
    assert out.embeds[0, :, 0].tolist() == [1, 5, 100, 101, 102, 6, 7]
    assert out.labels[0].tolist() == [-100, -100, -100, -100, -100, 6, 7]
    assert out.image_starts == [2, -1]
    assert out.attention_mask.tolist() == [[1] * 7, [1, 1, 1, 0, 0, 0, 0]]
    assert out.embeds[1, :3, 0].tolist() == [1, 8, 9]
    assert out.labels[1].tolist() == [-100, 8, 9, -100, -100, -100, -100]
    # Exactly 3 image tokens were inserted, none into the text-only sample.
    assert int((out.embeds[..., 0] >= 100).sum()) == 3


def test_splice_left_pads_for_generation_and_checks_counts():
    ids = torch.tensor([[0, 0, 1, IMAGE_TOKEN_INDEX, 4], [1, 2, 3, 4, 5]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    image = torch.full((1, 4, 4), 50.0)
    out = splice_image_tokens(ids, mask, None, _embed, image, [0, None], "left")
    # Sample 0: its own padding is dropped, 2 text + 4 image tokens = 6; sample 1: 5 tokens,
    # re-padded on the left.
    assert out.embeds.shape == (2, 6, 4)
    assert out.embeds[0, :, 0].tolist() == [1, 50, 50, 50, 50, 4]
    assert out.attention_mask.tolist() == [[1] * 6, [0, 1, 1, 1, 1, 1]]
    assert out.embeds[1, 1:, 0].tolist() == [1, 2, 3, 4, 5]
    assert out.image_starts == [1, -1]
    assert out.labels is None
    with pytest.raises(ValueError, match="has an image but 0 image placeholders"):
        splice_image_tokens(ids[1:], mask[1:], None, _embed, image, [0], "right")
    with pytest.raises(ValueError, match="has no image but 1 image placeholders"):
        splice_image_tokens(ids[:1], mask[:1], None, _embed, image, [None], "right")


def test_model_forward_masks_image_positions_and_matches_per_sample_losses(encoder, llm_dir):
    model = make_model(encoder, llm_dir)
    tok = AutoTokenizer.from_pretrained(llm_dir)
    text = tok("a red square\n", add_special_tokens=False).input_ids
    long = [tok.bos_token_id, IMAGE_TOKEN_INDEX, *text]
    short = [tok.bos_token_id, *text[:3]]
    ids = torch.tensor([long, short + [0] * (len(long) - len(short))])
    mask = torch.tensor([[1] * len(long), [1] * len(short) + [0] * (len(long) - len(short))])
    labels = torch.where(mask.bool() & (ids >= 0), ids, torch.tensor(IGNORE_INDEX))
    labels[:, 0] = IGNORE_INDEX
    pixels = preprocess_images(encoder, [draw("red", "square"), draw("red", "square")])
    image_mask = torch.tensor([True, False])
    out = model(ids, mask, labels, pixels, image_mask)
    assert out["labels"].shape[1] == len(long) - 1 + model.image_tokens
    assert (out["labels"][0, 1 : 1 + model.image_tokens] == IGNORE_INDEX).all()
    batch_nll = model.sequence_nll(ids, mask, labels, pixels, image_mask)
    alone = model.sequence_nll(
        ids[1:, : len(short)], mask[1:, : len(short)], labels[1:, : len(short)]
    )
    torch.testing.assert_close(batch_nll[1], alone[0], rtol=1e-4, atol=1e-4)
    assert torch.isfinite(out["loss"])


def test_loss_matches_shifted_cross_entropy_and_is_zero_without_targets():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[0, :3] = IGNORE_INDEX
    labels[2] = IGNORE_INDEX
    reference = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
    )
    torch.testing.assert_close(causal_lm_loss(logits, labels), reference)
    per = causal_lm_loss(logits, labels, per_sample=True)
    first = torch.nn.functional.cross_entropy(logits[0, 2:5], labels[0, 3:])
    torch.testing.assert_close(per[0], first)
    assert per[2] == 0
    none = torch.full_like(labels, IGNORE_INDEX)
    assert causal_lm_loss(logits.requires_grad_(), none).item() == 0.0


def test_pad_to_square_false_centre_crops(encoder):
    wide = draw("red", "square", size=(80, 20))
    cropped = preprocess_images(encoder, [wide], pad_to_square=False)
    padded = preprocess_images(encoder, [wide], pad_to_square=True)
    assert cropped.shape == padded.shape == (1, 3, 56, 56)
    assert not torch.allclose(cropped, padded)


# ---- tiny LLM ---------------------------------------------------------------------------------
def test_tiny_llm_loads_like_vicuna(llm_dir):
    tok = AutoTokenizer.from_pretrained(llm_dir)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir)
    assert llm.config.model_type == "llama" and llm.config.num_hidden_layers == 2
    assert llm.config.vocab_size == len(tok)
    assert (tok.bos_token, tok.eos_token, tok.unk_token) == ("<s>", "</s>", "<unk>")
    ids = tok("ASSISTANT: red</s>").input_ids
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
    assert "<image>" not in tok.get_vocab()
    # Template words were in the tokenizer corpus, so they are short.
    assert len(tok(" ASSISTANT:", add_special_tokens=False).input_ids) <= 2


def test_tiny_llm_is_seeded(tmp_path):
    a = write_tiny_llm(TEXTS, tmp_path / "a", seed=3)
    b = write_tiny_llm(TEXTS, tmp_path / "b", seed=3)
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- checkpoints ------------------------------------------------------------------------------


def _logits(model: LlavaStyleModel, tok) -> torch.Tensor:
    ids = torch.tensor([[tok.bos_token_id, IMAGE_TOKEN_INDEX, 5, 6]])
    pixels = preprocess_images(model.encoder, [draw("blue", "circle")])
    with torch.no_grad():
        return model(ids, torch.ones_like(ids), None, pixels)["logits"]


def test_fusion_spec_round_trips_with_members():
    fusion = EncoderSpec("a+b", "fusion", input_size=56, members=(SPEC, SPEC), seed=2)
    back = spec_from_dict(json.loads(json.dumps(spec_to_dict(fusion))))
    assert back == fusion and back.members[0].tiny == {}


def test_stage1_folder_round_trip(encoder, llm_dir, tmp_path):
    from vislaw.vlm.checkpoints import llm_reference

    model = make_model(encoder, llm_dir)
    folder = tmp_path / "stage1" / "clip_t"
    reference, local = llm_reference(str(llm_dir), folder)
    assert local and not Path(reference).is_absolute()
    write_stage(folder, vlm_info(1, model, reference, local, "plain"), model.projector.state_dict())
    assert sorted(p.name for p in folder.iterdir()) == ["projector.safetensors", "vlm.json"]
    loaded = load_vlm(folder)
    assert loaded.info.stage == 1 and loaded.template.name == "plain"
    for key, value in model.projector.state_dict().items():
        assert torch.equal(loaded.model.projector.state_dict()[key], value)
    torch.testing.assert_close(
        _logits(loaded.model, loaded.tokenizer), _logits(model, loaded.tokenizer)
    )


def test_stage2_folder_round_trip_and_answers(encoder, llm_dir, tmp_path):
    model = make_model(encoder, llm_dir)
    with torch.no_grad():
        model.llm.lm_head.weight.mul_(2.0)  # a "finetuned" LLM that differs from llm_dir
    tok = AutoTokenizer.from_pretrained(llm_dir)
    folder = tmp_path / "stage2"
    write_stage(
        folder,
        vlm_info(2, model, "llm", True, "vicuna_v1"),
        model.projector.state_dict(),
        model.llm,
        tok,
    )
    loaded = load_vlm(folder)
    torch.testing.assert_close(_logits(loaded.model, tok), _logits(model, tok))
    answers = loaded.answer(
        ["What colour is it?", "Name a colour."], [draw("red", "square"), None], max_new_tokens=3
    )
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_unfinished_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a finished stage folder"):
        load_vlm(tmp_path)


@pytest.mark.parametrize("kind", ["mlp2x_gelu", "linear"])
def test_llava_mm_projector_bin_round_trip(encoder, llm_dir, tmp_path, kind):
    model = make_model(encoder, llm_dir, kind)
    path = tmp_path / "mm_projector.bin"
    write_llava_projector(model.projector.state_dict(), path)
    raw = torch.load(path, weights_only=True)
    prefix = "model.mm_projector."
    expected = {f"{prefix}0.weight", f"{prefix}0.bias", f"{prefix}2.weight", f"{prefix}2.bias"}
    assert set(raw) == (expected if kind != "linear" else {f"{prefix}weight", f"{prefix}bias"})
    state, found = read_llava_projector(path)
    assert found == kind
    out = import_llava(path, tmp_path / "s1", SPEC, 1, llm=str(llm_dir))
    loaded = load_vlm(out)
    assert loaded.info.projector_type == kind
    torch.testing.assert_close(
        _logits(loaded.model, loaded.tokenizer), _logits(model, loaded.tokenizer)
    )


def _write_llava_stage2(model: LlavaStyleModel, llm_dir: Path, folder: Path) -> None:
    """A small checkpoint as LLaVA-1.5's trainer saves one: llava_llama config, two .bin
    shards with an index, LLM keys plus model.mm_projector.* (and a vision-tower key)."""
    folder.mkdir()
    config = json.loads((llm_dir / "config.json").read_text())
    config.update(
        model_type="llava_llama",
        architectures=["LlavaLlamaForCausalLM"],
        mm_projector_type="mlp2x_gelu",
        mm_hidden_size=model.encoder.channels,
        mm_vision_tower="openai/clip-vit-large-patch14-336",
        mm_vision_select_layer=-2,
        image_aspect_ratio="pad",
        use_mm_proj=True,
    )
    (folder / "config.json").write_text(json.dumps(config))
    state = dict(model.llm.state_dict())
    state.update({f"model.mm_projector.{k}": v for k, v in model.projector.state_dict().items()})
    state["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.ones(4)
    keys = sorted(state)
    shards = [keys[: len(keys) // 2], keys[len(keys) // 2 :]]
    index = {"metadata": {}, "weight_map": {}}
    for n, names in enumerate(shards, start=1):
        name = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save({k: state[k].clone() for k in names}, folder / name)
        index["weight_map"].update(dict.fromkeys(names, name))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    AutoTokenizer.from_pretrained(llm_dir).save_pretrained(folder)


def test_released_llava_stage2_folder_imports(encoder, llm_dir, tmp_path):
    model = make_model(encoder, llm_dir)
    with torch.no_grad():
        model.llm.model.norm.weight.add_(0.5)
    _write_llava_stage2(model, llm_dir, tmp_path / "llava-v1.5-tiny")
    out = import_llava(tmp_path / "llava-v1.5-tiny", tmp_path / "stage2", SPEC, 2)
    loaded = load_vlm(out)
    assert loaded.info.template == "vicuna_v1" and (out / "llm" / "config.json").is_file()
    assert loaded.model.llm.config.model_type == "llama"
    torch.testing.assert_close(
        _logits(loaded.model, loaded.tokenizer), _logits(model, loaded.tokenizer)
    )


def test_import_cli(encoder, llm_dir, tmp_path, minimal_config):
    import yaml

    from vislaw.vlm.__main__ import main

    model = make_model(encoder, llm_dir)
    write_llava_projector(model.projector.state_dict(), tmp_path / "mm_projector.bin")
    minimal_config["encoders"]["clip224"]["input_size"] = 56
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(minimal_config))
    main(
        [
            "import-llava",
            "--stage",
            "1",
            "--src",
            str(tmp_path / "mm_projector.bin"),
            "--config",
            str(config),
            "--encoder",
            "clip224",
            "--protocol",  # the checkpoint was trained on vislaw's features (the default: paper)
            "vislaw",
            "--out",
            str(tmp_path / "o"),
            "--llm",
            str(llm_dir),
        ]
    )
    info = VlmInfo.read(tmp_path / "o")
    assert info.encoder.name == "clip224" and info.projector_type == "mlp2x_gelu"
    assert info.image_tokens == 16


# ---- what the authors' checkpoint config says about its tower -----------------------------------
CLIP336 = EncoderSpec("clip336", "clip", 336, model_id="openai/clip-vit-large-patch14-336")
DINO = EncoderSpec("dinov2", "dinov2", 336, model_id="facebook/dinov2-large", patch_size=14)
FUSED = EncoderSpec("clip336+dinov2", "fusion", 336, members=(CLIP336, DINO))


def _tower_config(folder: Path, **fields) -> Path:
    """A checkpoint folder holding only the config.json keys the authors' train.py writes."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava_llama", **fields}))
    return folder


def test_import_refuses_a_fusion_whose_members_the_checkpoint_orders_otherwise(tmp_path):
    from vislaw.vlm.llava import check_tower

    good = _tower_config(
        tmp_path / "a", mm_vision_tower="openai/clip-vit-large-patch14-336.facebook/dinov2-large"
    )
    check_tower(good, FUSED)
    swapped = _tower_config(
        tmp_path / "b", mm_vision_tower="facebook/dinov2-large.openai/clip-vit-large-patch14-336"
    )
    with pytest.raises(ValueError, match=r"order.*encoders.clip336\+dinov2.members"):
        check_tower(swapped, FUSED)
    # Through the import itself, before any weight is read (the folder has none).
    with pytest.raises(ValueError, match="would be swapped"):
        import_llava(swapped, tmp_path / "out", FUSED, 2)
    assert not (tmp_path / "out").exists()


def test_import_refuses_a_checkpoint_of_another_tower(tmp_path):
    from vislaw.vlm.llava import check_tower

    other = _tower_config(tmp_path / "a", mm_vision_tower="openai/clip-vit-large-patch14")
    with pytest.raises(ValueError, match="encoders.clip336.model_id.*another encoder"):
        check_tower(other, CLIP336)
    # A tiny twin names no id: nothing to compare, nothing refused.
    check_tower(other, SPEC)


@pytest.mark.parametrize(
    "spec,fields,key",
    [
        (EncoderSpec("sd15", "sd_unet", 768, model_id="x/sd15"), {"up_ft_index": 1}, "up_block"),
        (EncoderSpec("sd15", "sd_unet", 512, model_id="x/sd15"), {"img_size": 768}, "input_size"),
        (EncoderSpec("dit", "dit", 512, model_id="x/dit", layer=0), {"up_ft_index": 2}, "layer"),
    ],
)
def test_import_refuses_another_diffusion_block_or_size(tmp_path, spec, fields, key):
    from vislaw.vlm.llava import check_tower

    folder = _tower_config(tmp_path / "c", mm_vision_tower=spec.model_id, **fields)
    with pytest.raises(ValueError, match=f"encoders.{spec.name}.{key}"):
        check_tower(folder, spec)


def test_import_accepts_the_authors_training_defaults_as_configured(tmp_path):
    """train.py's defaults (up_ft_index 0, img_size 768) match a spec configured that way; a
    spec's last block (-1) cannot be told from a count from the start, so it is not refused."""
    from vislaw.vlm.llava import check_tower

    fields = {"mm_vision_tower": "x/dit", "up_ft_index": 0, "img_size": 768}
    check_tower(
        _tower_config(tmp_path / "a", **fields),
        EncoderSpec("dit", "dit", 768, model_id="x/dit", layer=0),
    )
    check_tower(
        _tower_config(tmp_path / "b", **fields),
        EncoderSpec("dit", "dit", 768, model_id="x/dit"),
    )
    sd = EncoderSpec("sd15", "sd_unet", 768, model_id="x/sd15")
    check_tower(_tower_config(tmp_path / "c", mm_vision_tower="x/sd15", up_ft_index=0), sd)

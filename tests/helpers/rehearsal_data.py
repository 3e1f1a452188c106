"""What the dress rehearsal (tests/workflow/test_rehearsal.py) publishes under config.yaml's real
ids and URLs: the LLM twin, the LLaVA data (558K pretraining JSON + images.zip, the 665K mixture's
JSON and the image archives it references), the Imagenette archive of LMVR, SPair-71k and the eight
benchmark datasets as Hub dataset repos. Each in the real layout, at toy size, so that
`prepare` and every rule run the code they run on the real inputs.

Real layouts followed (what the unpacking and the loaders read): LLaVA-Pretrain's images.zip
holds ``<5-digit folder>/<id>.jpg`` at its root; COCO's train2017.zip holds ``train2017/``,
GQA's images.zip ``images/``, TextVQA's train_val_images.zip ``train_images/``, Visual Genome's
images.zip / images2.zip ``VG_100K/`` / ``VG_100K_2/``; OCR-VQA is fetched by hand into
``ocr_vqa/images/<id>.jpg``; imagenette2-320.tgz holds ``imagenette2-320/{train,val}/<wnid>/``.
The benchmark repos hold parquet files under the config and split names the lmms-eval task
YAML asks for, declared in the dataset card's ``configs`` block as on the Hub.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

COLOURS = [(220, 30, 30), (30, 200, 60), (40, 60, 220), (230, 200, 40), (150, 60, 200)]
# 16 decoder layers (Vicuna-7B-v1.5 has 32): the shallowest twin in which config.yaml's
# lmvr.layers (16) and lmvr.maps.layer (16) exist (hidden_states has layers + 1 entries); half
# the depth halves the rehearsal's LLM time. The twin's depth is test data, not a config key.
VICUNA_LAYERS = 16
# Imagenette's first two classes (tench, English springer).
IMAGENETTE_CLASSES = ["n01440764", "n02102040"]


def jpeg(i: int, size: tuple[int, int] = (48, 40)) -> bytes:
    """A small JPEG whose colour and white square depend on ``i``."""
    image = PILImage.new("RGB", size, COLOURS[i % len(COLOURS)])
    x = 4 + 5 * (i % 5)
    ImageDraw.Draw(image).rectangle([x, 6, x + 10, 16], fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        for name, data in members.items():
            handle.writestr(name, data)
    return buffer.getvalue()


def tar_gz_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            handle.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# ---- the LLM: lmsys/vicuna-7b-v1.5 ------------------------------------------------------------
def vicuna_twin(folder: Path, texts: Iterable[str], seed: int = 0) -> Path:
    """A tiny random-init LlamaForCausalLM (VICUNA_LAYERS deep) and a SentencePiece BPE
    ``tokenizer.model`` (LlamaTokenizer, as Vicuna ships: <unk>=0, <s>=1, </s>=2, byte
    fallback, BOS prepended, no pad token), the files of lmsys/vicuna-7b-v1.5."""
    import sentencepiece as spm
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from vislaw.vlm.random_llm import template_texts

    folder.mkdir(parents=True, exist_ok=True)
    corpus = [*template_texts(), *texts, "USER: ASSISTANT: A chat between a curious user."]
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 4),
        model_writer=model_file,
        model_type="bpe",
        vocab_size=400,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        character_coverage=1.0,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        minloglevel=2,
    )
    (folder / "tokenizer.model").write_bytes(model_file.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model_file.getvalue())
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
    }
    tokenizer_config = {
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "legacy": False,
        "model_max_length": 4096,
        "pad_token": None,
        "padding_side": "right",
        "sp_model_kwargs": {},
        "tokenizer_class": "LlamaTokenizer",
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2))
    config = LlamaConfig(
        vocab_size=processor.get_piece_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=VICUNA_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(folder)
    # Vicuna's generation_config.json (greedy unless asked: no do_sample).
    generation = {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "max_length": 4096,
        "temperature": 0.9,
        "top_p": 0.6,
    }
    (folder / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return folder


# ---- LLaVA-Pretrain (558K) and the 665K instruction mixture -----------------------------------
CAPTIONS = ["a red square on a field", "a green field with a white square", "a blue picture"]


def llava_pretrain(n: int) -> tuple[bytes, bytes]:
    """(blip_laion_cc_sbu_558k.json, images.zip): ``n`` caption samples, ids and paths as in the
    real file (``00453/004539375.jpg``), the image prompt as one of LLaVA's caption prompts."""
    samples, images = [], {}
    for i in range(n):
        ident = f"{4539375 + i:09d}"
        path = f"{ident[:5]}/{ident}.jpg"
        images[path] = jpeg(i)
        human = "Render a clear and concise summary of the photo.\n<image>"
        samples.append(
            {
                "id": ident,
                "image": path,
                "conversations": [
                    {"from": "human", "value": human},
                    {"from": "gpt", "value": CAPTIONS[i % len(CAPTIONS)]},
                ],
            }
        )
    return json.dumps(samples).encode(), zip_bytes(images)


# The 665K mixture's image sources: (data.sources name, path prefix in the JSON, archive member
# prefix, file name of image i). OCR-VQA has no archive (a manual source).
INSTRUCT_IMAGES = [
    ("coco_train2017", "coco/train2017", "train2017", lambda i: f"{33471 + i:012d}.jpg"),
    ("gqa", "gqa/images", "images", lambda i: f"{2354786 + i}.jpg"),
    ("ocr_vqa", "ocr_vqa/images", "images", lambda i: f"{140031996 + i}.jpg"),
    ("textvqa", "textvqa/train_images", "train_images", lambda i: f"{i:04x}a3b1c2d3e4f5.jpg"),
    ("vg_part1", "vg/VG_100K", "VG_100K", lambda i: f"{2356347 + i}.jpg"),
    ("vg_part2", "vg/VG_100K_2", "VG_100K_2", lambda i: f"{2400000 + i}.jpg"),
]


def llava_instruct(per_source: int) -> tuple[bytes, dict[str, dict[str, bytes]]]:
    """(llava_v1_5_mix665k.json, {source: {archive member: bytes}}): ``per_source`` two-turn
    samples per image source plus one text-only sample (ShareGPT's, without ``image``) as in
    the real mixture; the members are the paths each source's archive holds."""
    samples, archives = [], {}
    for s, (source, prefix, member_prefix, name) in enumerate(INSTRUCT_IMAGES):
        archives[source] = {}
        for i in range(per_source):
            filename = name(i)
            archives[source][f"{member_prefix}/{filename}"] = jpeg(s + i)
            colour = ["red", "green", "blue", "yellow", "purple"][(s + i) % 5]
            samples.append(
                {
                    "id": f"{source}-{i}",
                    "image": f"{prefix}/{filename}",
                    "conversations": [
                        {"from": "human", "value": "<image>\nWhat colour is the picture?"},
                        {"from": "gpt", "value": f"It is {colour}."},
                        {"from": "human", "value": "Is there a white square?"},
                        {"from": "gpt", "value": "Yes."},
                    ],
                }
            )
    samples.append(
        {
            "id": "sharegpt-0",
            "model": "",
            "conversations": [
                {"from": "human", "value": "Say hello."},
                {"from": "gpt", "value": "Hello."},
            ],
        }
    )
    return json.dumps(samples).encode(), archives


def imagenette(per_class: int) -> bytes:
    """imagenette2-320.tgz: ``per_class`` images per class in train/ and val/."""
    members = {}
    for split in ("train", "val"):
        for c, wnid in enumerate(IMAGENETTE_CLASSES):
            for i in range(per_class):
                name = f"imagenette2-320/{split}/{wnid}/{wnid}_{split}{i}.JPEG"
                members[name] = jpeg(c * 7 + i, size=(64, 48))
    return tar_gz_bytes(members)


def spair(folder: Path) -> bytes:
    """SPair-71k.tar.gz in the real layout (the demo generator's): two categories, a few pairs."""
    from vislaw.data.synthetic import generate_demo_data

    settings = {
        "image_size": 64,
        "n_pretrain": 1,
        "n_instruct": 1,
        "n_spair_images_per_category": 2,
        "n_spair_pairs_per_category": 2,
        "spair_categories": ["aeroplane", "bird"],
        "n_benchmark_questions": 1,
    }
    generate_demo_data(folder, settings, seed=0, progress=False)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as handle:
        handle.add(folder / "SPair-71k", arcname="SPair-71k")
    return buffer.getvalue()


# ---- the benchmarks' Hub datasets -------------------------------------------------------------
def dataset_repo(task: str, config_name: str | None, folder: Path) -> Path:
    """The tiny dataset of lmms-eval ``task`` (tests/helpers/real_task_data.py) as a Hub dataset
    repo: one parquet file per split under ``<config>/`` and a dataset card whose ``configs`` block
    names them, as the Hub's parquet repos do (split names such as ``dev`` or ``val2014`` are
    not inferred from file names, so the card must list them)."""
    from helpers.real_task_data import BUILDERS

    data = BUILDERS[task]()
    name = config_name or "default"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split, dataset in data.items():
        path = f"{name}/{split}-00000-of-00001.parquet"
        (folder / name).mkdir(exist_ok=True)
        dataset.to_parquet(str(folder / path))
        files.append(f"  - split: {split}\n    path: {path}")
    card = f"---\nconfigs:\n- config_name: {name}\n  data_files:\n" + "\n".join(files) + "\n---\n"
    (folder / "README.md").write_text(card + f"Tiny stand-in of the dataset of {task}.\n")
    return folder

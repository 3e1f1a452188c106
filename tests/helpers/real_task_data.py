"""Tiny stand-ins for the datasets of the paper's eight lmms-eval tasks: a few rows, generated
images, and exactly the columns and feature types that the installed task code reads (read from
lmms_eval/tasks/<task>/*.yaml and utils.py of lmms-eval 0.7.3; the Hub datasets are
lmms-lab-encoder/{MMBench, MME, MMMU, OK-VQA, textvqa, VizWiz-VQA, ScienceQA, SEED-Bench}).

Each builder returns a ``datasets.DatasetDict`` under the split name the task's YAML reads;
:func:`write_datasets` saves them with ``save_to_disk`` for :mod:`vislaw.eval.task_copies`.
If an lmms-eval upgrade makes a task read a column these lack, the real-task test fails: that
is the point of building them column by column.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, DatasetDict, Features, Image, Sequence, Value
from PIL import Image as PILImage
from PIL import ImageDraw

COLOURS = [(220, 30, 30), (30, 200, 60), (40, 60, 220), (230, 200, 40)]
STRING = Value("string")


def picture(i: int, size: tuple[int, int] = (40, 30)) -> PILImage.Image:
    """A small coloured canvas with a white square whose place depends on ``i``."""
    image = PILImage.new("RGB", size, COLOURS[i % len(COLOURS)])
    x = 4 + 6 * (i % 4)
    ImageDraw.Draw(image).rectangle([x, 6, x + 8, 14], fill=(255, 255, 255))
    return image


def _dict(split: str, rows: list[dict], features: Features) -> DatasetDict:
    columns = {name: [row[name] for row in rows] for name in features}
    return DatasetDict({split: Dataset.from_dict(columns, features=features)})


def mmbench() -> DatasetDict:
    """MMBench-EN dev: options A-D as text ("nan" when absent), ``index`` >= 1e6 marks the
    circular (option-rotated) copies of a question that circular evaluation scores together."""
    names = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category"]
    names += ["L2-category", "source", "split", "image"]
    features = Features({n: Value("int64") if n == "index" else STRING for n in names[:-1]})
    features["image"] = Image()
    rows = []
    for index, options, answer, hint in [
        (0, ["red", "green", "blue", "yellow"], "A", "nan"),
        (1, ["green", "red", "nan", "nan"], "A", "The picture is small."),
        (2, ["square", "circle", "triangle", "nan"], "A", "nan"),
        (1_000_000, ["yellow", "red", "green", "blue"], "B", "nan"),  # index 0 rotated
    ]:
        rows.append(
            dict(zip("ABCD", options, strict=True))
            | {
                "index": index,
                "question": "What is the main colour of the image?",
                "hint": hint,
                "answer": answer,
                "category": "attribute_recognition",
                "L2-category": "finegrained_perception (instance-level)",
                "source": "vislaw",
                "split": "dev",
                "image": picture(index % 1_000_000),
            }
        )
    return _dict("dev", rows, features)


def mme(cognition: bool = True) -> DatasetDict:
    """MME: two questions per image (a yes and a no), adjacent, sharing ``question_id``."""
    features = Features(
        {"question_id": STRING, "question": STRING, "answer": STRING, "category": STRING}
    )
    features["image"] = Image()
    categories = ["color", "existence"] + (["code_reasoning"] if cognition else [])
    rows = []
    for i, category in enumerate(categories):
        for answer, colour in (("Yes", "red"), ("No", "blue")):
            rows.append(
                {
                    "question_id": f"{category}/{i:04d}.png",
                    "question": f"Is the image {colour}? Please answer yes or no.",
                    "answer": answer,
                    "category": category,
                    "image": picture(i),
                }
            )
    return _dict("test", rows, features)


def mmmu() -> DatasetDict:
    """MMMU val: ``options`` is a Python list *as a string*, images in image_1..image_7 (the
    question names them ``<image k>``); one question uses two images, one is open-ended."""
    names = ["id", "question", "options", "explanation", "img_type", "answer"]
    names += ["topic_difficulty", "question_type", "subfield"]
    features = Features({n: STRING for n in names})
    for k in range(1, 8):
        features[f"image_{k}"] = Image()
    specs = [
        ("validation_Art_1", "<image 1> Which colour fills the image?", "['red', 'green']", "A"),
        (
            "validation_Art_2",
            "Compare <image 1> and <image 2>: which is green?",
            "['the first', 'the second']",
            "B",
        ),
        ("validation_Math_1", "<image 1> How many white squares are there?", "[]", "1"),
    ]
    rows = []
    for n, (doc_id, question, options, answer) in enumerate(specs):
        row = {name: "" for name in names} | {"id": doc_id, "question": question}
        row |= {"options": options, "answer": answer, "img_type": "['Diagrams']"}
        row["question_type"] = "multiple-choice" if options != "[]" else "open"
        row["topic_difficulty"], row["subfield"] = "Easy", "Colour"
        for k in range(1, 8):
            row[f"image_{k}"] = picture(n + k) if f"<image {k}>" in question else None
        rows.append(row)
    return _dict("validation", rows, features)


def _vqa_rows(n: int, answers: list[str]) -> list[dict]:
    return [
        {
            "question": "what colour is the image?",
            "answers": [answers[i % len(answers)]] * 10,
            "image": picture(i),
        }
        for i in range(n)
    ]


def ok_vqa() -> DatasetDict:
    """OK-VQA val2014: ten human ``answers`` per question, int question ids."""
    features = Features(
        {
            "question_id": Value("int64"),
            "question": STRING,
            "question_type": STRING,
            "answer_type": STRING,
            "answers": Sequence(STRING),
            "confidence": Value("int32"),
            "image": Image(),
        }
    )
    rows = [
        r | {"question_id": 1000 + i, "question_type": "other", "answer_type": "other"}
        for i, r in enumerate(_vqa_rows(3, ["red", "green", "blue"]))
    ]
    return _dict("val2014", [r | {"confidence": 3} for r in rows], features)


def textvqa() -> DatasetDict:
    """TextVQA val: ten ``answers``, OCR tokens (read only with the task's ``ocr`` option)."""
    features = Features(
        {
            "image_id": STRING,
            "question_id": Value("int64"),
            "question": STRING,
            "question_tokens": Sequence(STRING),
            "image": Image(),
            "image_width": Value("int64"),
            "image_height": Value("int64"),
            "flickr_original_url": STRING,
            "flickr_300k_url": STRING,
            "answers": Sequence(STRING),
            "image_classes": Sequence(STRING),
            "set_name": STRING,
            "ocr_tokens": Sequence(STRING),
        }
    )
    rows = []
    for i, row in enumerate(_vqa_rows(3, ["stop", "exit", "open"])):
        row |= {"image_id": f"img{i}", "question_id": 34602 + i, "question_tokens": ["what"]}
        row |= {"image_width": 40, "image_height": 30, "flickr_original_url": ""}
        row |= {"flickr_300k_url": "", "image_classes": ["sign"], "set_name": "val"}
        rows.append(row | {"ocr_tokens": ["stop"]})
    return _dict("validation", rows, features)


def vizwiz() -> DatasetDict:
    """VizWiz-VQA val: string question ids (the image file stem), ``answerable`` flags."""
    features = Features(
        {
            "question_id": STRING,
            "image": Image(),
            "question": STRING,
            "answers": Sequence(STRING),
            "category": STRING,
        }
    )
    rows = [
        r | {"question_id": f"VizWiz_val_{i:08d}", "category": "other"}
        for i, r in enumerate(_vqa_rows(3, ["red", "unanswerable", "blue"]))
    ]
    return _dict("val", rows, features)


def scienceqa() -> DatasetDict:
    """ScienceQA-IMG test: ``choices`` a list, ``answer`` the index, ``hint`` the context."""
    names = ["question", "hint", "task", "grade", "subject", "topic", "category", "skill"]
    names += ["lecture", "solution"]
    features = Features({n: STRING for n in names})
    features |= {"image": Image(), "choices": Sequence(STRING), "answer": Value("int8")}
    rows = []
    for i, (hint, choices, answer) in enumerate(
        [("", ["red", "blue"], 0), ("The image is a photo.", ["a square", "a circle"], 0)]
    ):
        row = {name: "x" for name in names}
        row |= {"question": "Which is shown?", "hint": hint, "choices": choices}
        rows.append(row | {"answer": answer, "image": picture(i)})
    return _dict("test", rows, features)


def seedbench() -> DatasetDict:
    """SEED-Bench: ``image`` is a list (one image; eight frames for ``data_type`` video), and
    ``process_results`` files each answer under ``seed_<data_type>``."""
    names = ["answer", "choice_a", "choice_b", "choice_c", "choice_d", "data_id", "data_type"]
    names += ["question", "question_id", "segment"]
    features = Features({n: STRING for n in names})
    features["image"] = Sequence(Image())
    rows = []
    for i, (data_type, frames) in enumerate([("image", 1), ("image", 1), ("video", 3)]):
        row = {"answer": "A", "choice_a": "red", "choice_b": "green", "choice_c": "blue"}
        row |= {"choice_d": "yellow", "data_id": f"{i}.jpg", "data_type": data_type}
        row |= {"question": "What colour is it?", "question_id": str(100 + i), "segment": ""}
        rows.append(row | {"image": [picture(i + f) for f in range(frames)]})
    return _dict("test", rows, features)


def cv_bench() -> DatasetDict:
    """CV-Bench (nyu-visionx/CV-Bench, Cambrian's vision-centric set): ``choices`` a list,
    ``answer`` the option in parentheses ("(A)"), ``prompt`` the question with its options;
    ``process_results`` keeps ``idx``, ``type``, ``task`` and ``source``."""
    features = Features(
        {
            "idx": Value("int32"),
            "type": STRING,
            "task": STRING,
            "image": Image(),
            "question": STRING,
            "choices": Sequence(STRING),
            "answer": STRING,
            "prompt": STRING,
            "filename": STRING,
            "source": STRING,
        }
    )
    rows = []
    for i, (kind, task, source) in enumerate(
        [("2D", "Count", "ADE20K"), ("2D", "Relation", "COCO"), ("3D", "Depth", "Omni3D")]
    ):
        question = "Which colour fills the image?"
        rows.append(
            {
                "idx": i,
                "type": kind,
                "task": task,
                "image": picture(i),
                "question": question,
                "choices": ["red", "green"],
                "answer": "(A)" if i % 2 == 0 else "(B)",
                "prompt": f"{question} Select from the following choices.\n(A) red\n(B) green",
                "filename": f"img/{kind}/{task}/{i}.png",
                "source": source,
            }
        )
    return _dict("test", rows, features)


def mmstar() -> DatasetDict:
    """MMStar val (Lin-Chen/MMStar): options inside ``question``, ``answer`` a letter, scored per
    ``category`` and as ``average`` (the default metric, tasks.DEFAULT_METRICS)."""
    features = Features(
        {
            "index": Value("int64"),
            "question": STRING,
            "image": Image(),
            "answer": STRING,
            "category": STRING,
            "l2_category": STRING,
        }
    )
    rows = [
        {
            "index": i,
            "question": "Which colour fills the image?\nOptions: A: red, B: green",
            "image": picture(i),
            "answer": "AB"[i % 2],
            "category": category,
            "l2_category": "colour",
        }
        for i, category in enumerate(["coarse perception", "fine-grained perception", "math"])
    ]
    return _dict("val", rows, features)


def blink(sub_task: str = "Counting") -> DatasetDict:
    """A BLINK subtask (BLINK-Benchmark/BLINK, config ``Counting``): up to four images in
    image_1..image_4 (None when absent), ``answer`` "(A)", ``prompt`` with the options."""
    features = Features(
        {
            "idx": STRING,
            "question": STRING,
            "sub_task": STRING,
            **{f"image_{k}": Image() for k in range(1, 5)},
            "choices": Sequence(STRING),
            "answer": STRING,
            "prompt": STRING,
            "explanation": STRING,
        }
    )
    rows = []
    for i, n_images in enumerate([1, 2, 1]):
        question = "How many white squares are there?"
        row = {"idx": f"val_{sub_task}_{i + 1}", "question": question, "sub_task": sub_task}
        row |= {f"image_{k}": picture(i + k) if k <= n_images else None for k in range(1, 5)}
        row |= {"choices": ["1", "2", "3"], "answer": "(A)", "explanation": ""}
        rows.append(
            row | {"prompt": f"{question}\nSelect from the following choices.\n(A) 1\n(B) 2\n(C) 3"}
        )
    return _dict("val", rows, features)


# lmms-eval task -> builder, for the eight benchmarks of config.yaml
BUILDERS = {
    "mmbench_en_dev_static": mmbench,
    "mmbench_en_dev": mmbench,
    "mme": mme,
    "mmmu_val": mmmu,
    "ok_vqa_val2014": ok_vqa,
    "textvqa_val": textvqa,
    "vizwiz_vqa_val": vizwiz,
    "scienceqa_img": scienceqa,
    "seedbench": seedbench,
    # lmms-eval tasks beyond the paper's (issue 28: any installed task as a benchmark)
    "cv_bench": cv_bench,
    "mmstar": mmstar,
    "blink_counting": blink,
}


def write_datasets(tasks: list[str], root: Path) -> dict[str, Path]:
    """Each task's tiny dataset saved under ``root/<task>`` (``save_to_disk``)."""
    out = {}
    for task in tasks:
        out[task] = root / task
        BUILDERS[task]().save_to_disk(str(out[task]))
    return out

"""Any installed lmms-eval task as a benchmark (issue 28, scope 4): CV-Bench, MMStar and a
BLINK subtask, named in ``benchmarks:`` like the paper's eight.

The config is checked against the installed task YAMLs (an unknown task is refused naming the
key); the metric is the task's own (MMStar's ``average``, the first metric_list entry
otherwise); ``prepare`` reads the Hub dataset from the task YAML; the installed task code runs
unchanged on tiny datasets with the real columns (tests/helpers/real_task_data.py) through the
evaluate rule's runner, and its score reaches the law's input table.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pandas as pd
import pytest

from helpers.real_task_data import write_datasets
from vislaw.config import ConfigError
from vislaw.eval.results import benchmark_rows
from vislaw.eval.task_copies import write_task_copy
from vislaw.eval.tasks import resolve_benchmarks
from vislaw.pipeline import load_checked_config

NEW = ["cv_bench", "mmstar", "blink_counting"]


def with_benchmarks(config: dict, benchmarks: list[str], **eval_keys) -> dict:
    return config | {"benchmarks": benchmarks, "eval": eval_keys}


def test_config_accepts_installed_tasks_with_their_default_metrics(minimal_config):
    config, _ = load_checked_config(with_benchmarks(minimal_config, ["mmbench_en", *NEW]))
    by_name = {b.name: b for b in resolve_benchmarks(config)}
    assert by_name["mmbench_en"].metric == "gpt_eval_score"  # the paper's, unchanged
    assert by_name["cv_bench"].task == "cv_bench" and by_name["cv_bench"].metric == "cv_bench_acc"
    assert by_name["mmstar"].metric == "average"  # not the first listed, "coarse perception"
    assert by_name["blink_counting"].metric == "blink_acc"


def test_eval_tasks_and_metrics_name_the_task_and_metric(minimal_config):
    config = with_benchmarks(
        minimal_config,
        ["cvb_2d", "mmstar"],
        tasks={"cvb_2d": "cv_bench_2d"},
        metrics={"mmstar": "math"},
    )
    config, _ = load_checked_config(config)
    cvb, star = resolve_benchmarks(config)
    assert (cvb.name, cvb.task, cvb.metric) == ("cvb_2d", "cv_bench_2d", "cv_bench_acc")
    assert (star.task, star.metric) == ("mmstar", "math")


@pytest.mark.parametrize(
    ("benchmarks", "eval_keys", "key", "words"),
    [
        (["cv_bench", "no_such_task"], {}, "benchmarks.1", "'no_such_task'"),
        (["blink"], {}, "benchmarks.0", "'blink'"),  # a group: its subtasks are the tasks
        (["cvb"], {"tasks": {"cvb": "cv_benhc"}}, "eval.tasks.cvb", "'cv_benhc'"),
        (["mmstar"], {"metrics": {"mmstar": "avg"}}, "eval.metrics.mmstar", "'average'"),
        (["mme"], {"metrics": {"mme": "mme_cognition_score"}}, "eval.metrics.mme", "perception"),
        (["cv_bench"], {"metrics": {"mmstar": "average"}}, "eval.metrics", "['mmstar']"),
    ],
)
def test_unknown_task_or_metric_is_refused_naming_the_key(
    minimal_config, benchmarks, eval_keys, key, words
):
    with pytest.raises(ConfigError) as err:
        load_checked_config(with_benchmarks(minimal_config, benchmarks, **eval_keys))
    assert err.value.key == key and words in str(err.value)


def test_prepare_caches_the_datasets_the_task_yamls_name(minimal_config):
    from vislaw.prepare.hub import benchmark_datasets

    config, _ = load_checked_config(with_benchmarks(minimal_config, NEW))
    data = benchmark_datasets(config)
    assert data["cv_bench"].dataset_path == "nyu-visionx/CV-Bench"
    assert data["cv_bench"].splits == ("test",)
    assert (data["mmstar"].dataset_path, data["mmstar"].splits) == ("Lin-Chen/MMStar", ("val",))
    assert data["mmstar"].token  # the task passes the user's Hub token
    blink = data["blink_counting"]
    assert (blink.dataset_path, blink.dataset_name) == ("BLINK-Benchmark/BLINK", "Counting")


@pytest.fixture(scope="module")
def new_tasks(tmp_path_factory) -> Path:
    """Task copies of the three installed tasks reading tiny saved datasets."""
    root = tmp_path_factory.mktemp("new")
    datasets = write_datasets(NEW, root / "data")
    for task in NEW:
        write_task_copy(task, datasets[task], root / "tasks")
    return root / "tasks"


@pytest.mark.slow
def test_new_tasks_score_through_the_runner_into_the_law(
    stage2,
    new_tasks,
    minimal_config,
    tmp_path,
):
    from vislaw.eval.launch import evaluate_benchmarks
    from vislaw.eval.results import write_table
    from vislaw.law.inputs import build_law_input

    config, _ = load_checked_config(with_benchmarks(minimal_config, NEW))
    benchmarks = resolve_benchmarks(config)
    outputs = {b.name: tmp_path / f"{b.name}.json" for b in benchmarks}
    samples = {b.name: tmp_path / f"{b.name}.samples.jsonl" for b in benchmarks}
    start = time.perf_counter()
    evaluate_benchmarks(
        stage2, benchmarks, outputs, new_tasks, batch_size=4, max_new_tokens=4, samples=samples
    )
    print(f"3 new tasks through the runner: {time.perf_counter() - start:.1f} s")
    rows = []
    for bench in benchmarks:
        data = json.loads(outputs[bench.name].read_text())
        assert data["vislaw"]["task"] == bench.task
        assert data["n-samples"][bench.task]["effective"] == 3, bench.name
        (row,) = benchmark_rows("tiny", bench, outputs[bench.name])
        assert row.metric == bench.metric and 0.0 <= row.score <= 100.0, bench.name
        assert math.isfinite(row.score) and row.scored
        rows.append(row)
    first = json.loads(samples["cv_bench"].read_text().splitlines()[0])
    assert "Note: You only need to respond with A, B" in first["input"]  # the task's own prompt
    # BLINK's second document has two images: the runner counts it
    assert json.loads(outputs["blink_counting"].read_text())["vislaw"]["multi_image_documents"]
    # the law input keeps each new benchmark's one metric, joined with A and C like the paper's
    table = write_table(rows, tmp_path / "benchmarks.csv")
    names = [b.name for b in benchmarks]
    pd.DataFrame({"encoder": ["tiny"] * 3, "benchmark": names, "a_cosine": [0.1, 0.2, 0.3]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    pd.DataFrame({"encoder": ["tiny"], "pck10_image": [0.2]}).to_csv(tmp_path / "c.csv")
    law = build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", table)
    assert dict(zip(law["benchmark"], law["score"], strict=True)) == {
        r.benchmark: r.score for r in rows
    }


def test_a_score_sample_of_a_new_task(new_tasks, tmp_path):
    """The A score samples CV-Bench's documents like a paper benchmark's (from the copy)."""
    from PIL import Image

    from vislaw.eval.tasks import get_benchmark
    from vislaw.scores.a_images import sample_benchmark

    out = tmp_path / "cv_bench.json"
    items = sample_benchmark(get_benchmark("cv_bench"), 2, 0, out, include_path=str(new_tasks))
    assert len(items) == 2 and json.loads(out.read_text())["benchmark"] == "cv_bench"
    with Image.open(items[0]["path"]) as image:
        assert image.size == (40, 30)  # real_task_data.picture

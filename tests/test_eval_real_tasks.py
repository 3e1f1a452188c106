"""The paper's eight benchmarks through lmms-eval's *real* task code, in CI.

Each installed task (its YAML, prompts, ``process_results`` and aggregation) runs unchanged on a
tiny dataset with the real columns (tests/real_task_data.py); only the dataset location differs
(vislaw.eval.task_copies). They run through the evaluate rule's own code
(vislaw.eval.runner.evaluate_benchmarks) on the tiny stage-2 model of test_eval.py, in one
process. When lmms-eval is upgraded and a task changes what it reads or reports, this fails.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import yaml
from real_task_data import write_datasets
from test_eval import stage2  # noqa: F401  (the tiny overfitted stage-2 model, module fixture)

from vislaw.eval.results import benchmark_rows
from vislaw.eval.task_copies import write_task_copy
from vislaw.eval.tasks import resolve_benchmarks

PAPER_CONFIG = Path(__file__).parents[1] / "config.yaml"


def paper_benchmarks():
    return resolve_benchmarks(yaml.safe_load(PAPER_CONFIG.read_text()))


@pytest.fixture(scope="module")
def real_tasks(tmp_path_factory) -> Path:
    """Task copies of the paper's tasks (and the GPT-judged MMBench) on tiny datasets."""
    root = tmp_path_factory.mktemp("real")
    tasks = [b.task for b in paper_benchmarks()] + ["mmbench_en_dev"]
    datasets = write_datasets(tasks, root / "data")
    for task in tasks:
        write_task_copy(task, datasets[task], root / "tasks")
    return root / "tasks"


@pytest.fixture(scope="module")
def paper_run(stage2, real_tasks, tmp_path_factory):  # noqa: F811
    from vislaw.eval.runner import evaluate_benchmarks

    out = tmp_path_factory.mktemp("eval")
    benchmarks = paper_benchmarks()
    outputs = {b.name: out / f"{b.name}.json" for b in benchmarks}
    samples = {b.name: out / f"{b.name}.samples.jsonl" for b in benchmarks}
    start = time.perf_counter()
    evaluate_benchmarks(
        stage2, benchmarks, outputs, real_tasks, batch_size=4, max_new_tokens=4, samples=samples
    )
    print(f"8 real tasks through the runner: {time.perf_counter() - start:.1f} s")
    return benchmarks, outputs, samples


def test_every_paper_benchmark_scores_through_the_runner(paper_run):
    benchmarks, outputs, samples = paper_run
    assert [b.name for b in benchmarks] == [
        "mmbench_en",
        "mme",
        "mmmu_val",
        "ok_vqa",
        "textvqa_val",
        "vizwiz_vqa_val",
        "scienceqa_img",
        "seed_image",
    ]
    for bench in benchmarks:
        rows = benchmark_rows("tiny", bench, outputs[bench.name])
        assert rows[0].metric == bench.metric and math.isfinite(rows[0].score), bench.name
        lines = samples[bench.name].read_text().splitlines()
        assert lines and all(json.loads(line)["doc_id"] >= 0 for line in lines)

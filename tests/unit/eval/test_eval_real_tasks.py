"""The paper's eight benchmarks through lmms-eval's *real* task code, in CI.

Each installed task (its YAML, prompts, ``process_results`` and aggregation) runs unchanged on a
tiny dataset with the real columns (tests/helpers/real_task_data.py); only the dataset location
differs (vislaw.eval.task_copies). They run through the evaluate rule's own code
(vislaw.eval.launch.evaluate_benchmarks) on the tiny stage-2 model of test_eval.py, in one
process. When lmms-eval is upgraded and a task changes what it reads or reports, this fails.
"""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time
from pathlib import Path

import pytest

from helpers.paths import ROOT
from helpers.real_task_data import write_datasets
from vislaw.config import load_config
from vislaw.eval.results import benchmark_rows
from vislaw.eval.task_copies import write_task_copy
from vislaw.eval.tasks import get_benchmark, resolve_benchmarks
from vislaw.law.tables import PAPER_BENCHMARKS

PAPER_CONFIG = ROOT / "config.yaml"


def paper_benchmarks():
    return resolve_benchmarks(load_config(PAPER_CONFIG))


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
def paper_run(stage2, real_tasks, tmp_path_factory):
    from vislaw.eval.launch import evaluate_benchmarks

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
    assert [b.name for b in benchmarks] == list(PAPER_BENCHMARKS)
    for bench in benchmarks:
        rows = benchmark_rows("tiny", bench, outputs[bench.name])
        assert rows[0].metric == bench.metric and math.isfinite(rows[0].score), bench.name
        lines = samples[bench.name].read_text().splitlines()
        assert lines and all(json.loads(line)["doc_id"] >= 0 for line in lines)
    # the prompts are the installed tasks' own (their doc_to_text and post prompts)
    first = {b.name: json.loads(samples[b.name].read_text().splitlines()[0]) for b in benchmarks}
    letter = "Answer with the option's letter from the given choices directly."
    assert first["mmbench_en"]["input"].endswith(letter)
    assert "There are several options:\nA. red\nB. green" in first["mmbench_en"]["input"]
    assert first["mme"]["input"].endswith("?\nAnswer the question using a single word or phrase.")
    assert first["mmmu_val"]["input"].startswith("<image 1> Which colour fills the image?\nA. red")
    assert first["scienceqa_img"]["input"] == f"Which is shown?\nA. red\nB. blue\n{letter}"
    assert first["seed_image"]["input"].endswith(f"D. yellow\n{letter}")
    assert "respond with 'Unanswerable'" in first["vizwiz_vqa_val"]["input"]


def test_results_are_the_model_own_and_count_multi_image_documents(paper_run, real_tasks):
    """The stored file is the tracker's results for the model (MMBench also wrote
    submissions/*_results.json beside it), annotated with the documents that had several
    images: MMMU's two-image question and SEED-Bench's video frames."""
    benchmarks, outputs, _ = paper_run
    for bench in benchmarks:
        data = json.loads(outputs[bench.name].read_text())
        assert data["model_name"] and bench.task in data["results"], bench.name
        notes = data["vislaw"]
        assert notes["task"] == bench.task and notes["limit"] is None
        assert notes["documents"] == data["n-samples"][bench.task]["effective"] >= 2
        expected = 1 if bench.name in ("mmmu_val", "seed_image") else 0
        assert notes["multi_image_documents"] == expected, bench.name
    mmbench = json.loads(outputs["mmbench_en"].read_text())["results"]["mmbench_en_dev_static"]
    assert 0.0 <= mmbench["gpt_eval_score,none"] <= 100.0


class FakeJudge(http.server.BaseHTTPRequestHandler):
    """An OpenAI-style chat endpoint on 127.0.0.1 answering ``content`` to every request."""

    content = "A"
    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers["Content-Length"])
        type(self).requests.append(json.loads(self.rfile.read(length)))
        body = json.dumps({"choices": [{"message": {"content": type(self).content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_judge():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeJudge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeJudge.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
    server.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gpt_judged_mmbench_is_scored_only_with_its_judge(
    stage2,
    real_tasks,
    fake_judge,
    tmp_path,
    monkeypatch,
):
    """mmbench_en_dev without a key, with an unreachable endpoint, or with a judge that fails:
    "not scored" with the reason (NaN in the table), never a number made of failed calls; with
    a working judge (a local OpenAI-style server) it is scored."""
    from vislaw.eval.launch import evaluate_benchmarks

    bench = get_benchmark("mmbench_en", {"mmbench_en": "mmbench_en_dev"})
    assert bench.judge is not None and bench.judge.key_env == "OPENAI_API_KEY"

    def run(name: str) -> list:
        out = tmp_path / name / "mmbench_en.json"
        samples = {bench.name: out.with_suffix(".samples.jsonl")}
        evaluate_benchmarks(
            stage2, [bench], {bench.name: out}, real_tasks, max_new_tokens=4, samples=samples
        )
        return benchmark_rows("tiny", bench, out)

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    start = time.perf_counter()
    (row,) = run("no_key")
    assert math.isnan(row.score) and "OPENAI_API_KEY is not set" in row.note
    assert time.perf_counter() - start < 30  # refused up front, no retries

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_API_URL", f"http://127.0.0.1:{free_port()}/v1/chat/completions")
    (row,) = run("unreachable")
    assert math.isnan(row.score) and "unreachable" in row.note

    monkeypatch.setenv("OPENAI_API_URL", fake_judge)
    FakeJudge.content = ""  # the evaluator counts an empty answer as a failed call
    (row,) = run("failing")
    assert math.isnan(row.score) and "judge failed on" in row.note
    assert FakeJudge.requests, "the tiny model's answers should need the judge"

    FakeJudge.content = "A"
    (row,) = run("working")
    assert row.scored and 0.0 <= row.score <= 100.0 and row.note == ""


def test_not_scored_rows_stay_out_of_the_law(tmp_path):
    """benchmarks.csv keeps a not-scored benchmark as NaN with its note; the law input drops
    those (encoder, benchmark) pairs instead of fitting a 0."""
    import pandas as pd

    from vislaw.eval.results import ScoreRow, read_table, write_table
    from vislaw.law.inputs import build_law_input

    reason = "OpenAI GPT judge: OPENAI_API_KEY is not set"
    rows = [
        ScoreRow("a", "mmbench_en", "mmbench_en_dev", "gpt_eval_score", math.nan, reason),
        ScoreRow("b", "mmbench_en", "mmbench_en_dev", "gpt_eval_score", math.nan, reason),
        ScoreRow("a", "mmmu_val", "mmmu_val", "mmmu_acc", 0.3),
        ScoreRow("b", "mmmu_val", "mmmu_val", "mmmu_acc", 0.4),
    ]
    table = write_table(rows, tmp_path / "benchmarks.csv")
    back = read_table(table)
    assert [r.note for r in back] == [reason, reason, "", ""]
    assert math.isnan(back[0].score) and back[2].score == 0.3
    assert pd.read_csv(table)["score"].isna().sum() == 2
    pd.DataFrame(
        {
            "encoder": ["a", "b", "a", "b"],
            "benchmark": ["mmbench_en", "mmbench_en", "mmmu_val", "mmmu_val"],
            "a_cosine": [0.1, 0.2, 0.3, 0.4],
        }
    ).to_csv(tmp_path / "a.csv", index=False)
    pd.DataFrame({"encoder": ["a", "b"], "pck10_image": [0.2, 0.3]}).to_csv(
        tmp_path / "c.csv", index=False
    )
    law = build_law_input(tmp_path / "a.csv", tmp_path / "c.csv", table)
    assert sorted(law["benchmark"]) == ["mmmu_val", "mmmu_val"]
    assert law["score"].tolist() == [0.3, 0.4]


def test_limit_keeps_mme_pairs_and_reports_the_metrics_it_could(
    stage2,
    real_tasks,
    tmp_path,
):
    """MME's six tiny documents are three yes/no pairs (color, existence, code_reasoning). An
    odd eval.limit of 3 is rounded up to 4 (two whole perception pairs: lmms-eval's pairwise
    assertion holds) and the table reports the perception score without the cognition score
    these documents could not give."""
    from vislaw.eval.launch import evaluate_benchmarks
    from vislaw.eval.task_loop import task_limit

    mme, mmmu = get_benchmark("mme"), get_benchmark("mmmu_val")
    assert [task_limit(mme, n) for n in (None, 1, 3, 4)] == [None, 2, 4, 4]
    assert task_limit(mmmu, 3) == 3
    out = tmp_path / "mme.json"
    evaluate_benchmarks(stage2, [mme], {mme.name: out}, real_tasks, limit=3, max_new_tokens=2)
    data = json.loads(out.read_text())
    assert data["vislaw"]["limit"] == 4 and data["n-samples"]["mme"]["effective"] == 4
    rows = benchmark_rows("tiny", mme, out)
    assert [r.metric for r in rows] == ["mme_perception_score"]
    assert 0.0 <= rows[0].score <= 400.0  # two categories, 200 points each


def test_a_score_sample_reads_the_task_copy(real_tasks, tmp_path):
    """The A score's image sample of a paper benchmark comes from the copy's dataset (the
    copy wins over the installed task of the same name), offline."""
    from PIL import Image

    from vislaw.scores.a_images import sample_lmms_task

    items = sample_lmms_task(get_benchmark("mme"), 3, 0, tmp_path, include_path=str(real_tasks))
    assert len(items) == 3
    with Image.open(items[0]["path"]) as image:
        assert image.size == (40, 30)  # real_task_data.picture, not a downloaded MME image


def test_judge_check_follows_lmms_eval_api_switch(monkeypatch):
    """The judge's key and endpoint are the variables the task's utils read: API_TYPE=azure
    switches to AZURE_API_KEY / AZURE_ENDPOINT; an API type the utils cannot use is refused."""
    from vislaw.eval.judge import judge_unavailable
    from vislaw.eval.tasks import OPENAI_JUDGE

    for name in ("OPENAI_API_KEY", "AZURE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("API_TYPE", "azure")
    assert "AZURE_API_KEY is not set" in judge_unavailable(OPENAI_JUDGE)
    monkeypatch.setenv("AZURE_API_KEY", "k")
    monkeypatch.setenv("AZURE_ENDPOINT", "not a url")
    assert "AZURE_ENDPOINT='not a url' is not a URL" in judge_unavailable(OPENAI_JUDGE)
    monkeypatch.setenv("API_TYPE", "claude")
    assert "API_TYPE='claude'" in judge_unavailable(OPENAI_JUDGE)

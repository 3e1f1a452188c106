"""Benchmarking with the stock lmms-eval: the benchmark -> (task, metric) table, local task
folders, the results parser (on a file the real tool wrote), our model plugin answering local
tasks through lmms-eval's own CLI and evaluator, and the runner's fixed names and failure report.

The model is a tiny stage-2 folder overfitted in seconds to three coloured squares, so a correct
plugin must score 1.0 both by ranking the options (loglikelihood) and by writing the answer
(generate_until); a sign error in the likelihood or a broken image splice would score ~0.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers.colour_bench import COLOURS, GEN, MC, OPTIONS, QUESTION, square, write_set
from helpers.paths import DATA
from vislaw.config import ConfigError, check_config, schema
from vislaw.eval.local_tasks import (
    DEFAULT_POST_PROMPT,
    BenchmarkSetError,
    read_benchmark_set,
    write_task_folder,
)
from vislaw.eval.results import (
    COLUMNS,
    ResultsError,
    ScoreRow,
    benchmark_rows,
    read_table,
    task_metrics,
    write_table,
)
from vislaw.eval.tasks import BENCHMARKS, Benchmark, get_benchmark, resolve_benchmarks

FIXTURE = DATA / "lmms_eval_0.7.3_results.json"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ---- fixtures (the tiny stage-2 model: helpers.fixtures' stage2) ------------------------------
@pytest.fixture(scope="module")
def bench_set(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("sets") / "colours")


@pytest.fixture(scope="module")
def tasks_dir(bench_set, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tasks")
    write_task_folder(bench_set, root, MC.task)
    write_task_folder(bench_set, root, GEN.task, output_type="generate_until")
    return root


# ---- the benchmark table ----------------------------------------------------------------------
def test_paper_benchmarks_map_to_lmms_eval_tasks_and_metrics():
    expected = {
        "mmbench_en": ("mmbench_en_dev_static", "gpt_eval_score"),
        "mme": ("mme", "mme_perception_score"),
        "mmmu_val": ("mmmu_val", "mmmu_acc"),
        "ok_vqa": ("ok_vqa_val2014", "exact_match"),
        "textvqa_val": ("textvqa_val", "exact_match"),
        "vizwiz_vqa_val": ("vizwiz_vqa_val", "exact_match"),
        "scienceqa_img": ("scienceqa_img", "exact_match"),
        "seed_image": ("seedbench", "seed_image"),
    }
    for name, (task, metric) in expected.items():
        bench = get_benchmark(name)
        assert (bench.task, bench.metric, bench.local) == (task, metric, False)
    assert get_benchmark("mme").metrics == ("mme_perception_score", "mme_cognition_score")
    assert all(BENCHMARKS[f"synth_{k}"].local for k in ("color", "shape", "position", "count"))
    # The config schema documents the paper's names and its pattern admits every table name;
    # any other name must be an installed lmms-eval task (tests/unit/eval/test_eval_new_tasks.py).
    node = schema()["properties"]["benchmarks"]
    assert all(name in node["description"] for name in expected)
    assert all(re.fullmatch(node["items"]["pattern"], name) for name in BENCHMARKS)


def test_eval_settings_of_the_cli_are_the_schema_defaults_unless_given(minimal_config):
    """python -m vislaw evaluate builds the same EvalSettings a config without `eval:`
    gives; an option replaces only its own key."""
    import argparse
    import dataclasses

    from vislaw.eval.cli import _cli_settings
    from vislaw.eval.settings import EvalSettings

    unset = dict(dtype=None, batch_size=None, max_new_tokens=None, limit=None)
    configured = EvalSettings.from_config(check_config(minimal_config))
    assert _cli_settings(argparse.Namespace(**unset)) == configured
    given = argparse.Namespace(**{**unset, "limit": 3, "dtype": "bfloat16"})
    assert _cli_settings(given) == dataclasses.replace(configured, limit=3, dtype="bfloat16")


def test_task_overrides_are_checked_against_the_metric(minimal_config):
    config = check_config(
        {**minimal_config, "benchmarks": ["mmbench_en", "mme"], "eval": {"tasks": {}}}
    )
    assert [b.task for b in resolve_benchmarks(config)] == ["mmbench_en_dev_static", "mme"]
    config["eval"]["tasks"] = {"mmbench_en": "mmbench_en_dev"}
    assert resolve_benchmarks(config)[0].task == "mmbench_en_dev"
    config["eval"]["tasks"] = {"mmbench_en": "mmbench_cn_dev"}
    with pytest.raises(ConfigError, match=r"eval\.tasks\.mmbench_en"):
        resolve_benchmarks(config)
    config["eval"]["tasks"] = {"seed_image": "seedbench"}
    with pytest.raises(ConfigError, match="not in `benchmarks`"):
        resolve_benchmarks(config)
    with pytest.raises(ConfigError, match="unknown benchmark"):
        get_benchmark("mmbench")


# ---- local task folders -----------------------------------------------------------------------
def test_task_folder_is_what_lmms_eval_loads(tasks_dir, bench_set):
    from lmms_eval.utils import load_yaml_config

    config = load_yaml_config(str(tasks_dir / MC.task / f"{MC.task}.yaml"))
    assert (config["task"], config["output_type"]) == (MC.task, "multiple_choice")
    data_file = Path(config["dataset_kwargs"]["data_files"]["test"])
    assert data_file.is_absolute() and data_file.is_file()  # resolved against the YAML's folder
    kwargs = config["lmms_eval_specific_kwargs"]["default"]
    assert Path(kwargs["image_root"]) == bench_set.resolve()
    docs = [json.loads(line) for line in data_file.read_text().splitlines()]
    assert [d["answer"] for d in docs] == list(COLOURS)  # the letter "C" became its option
    for doc, colour in zip(docs, COLOURS, strict=True):
        (image,) = config["doc_to_visual"](doc, kwargs)
        assert image.getpixel((20, 14)) == COLOURS[colour]
        assert config["doc_to_text"](doc, kwargs) == QUESTION + DEFAULT_POST_PROMPT
        assert config["doc_to_choice"](doc) == OPTIONS
        assert config["doc_to_target"](doc) == OPTIONS.index(colour)
    gen = load_yaml_config(str(tasks_dir / GEN.task / f"{GEN.task}.yaml"))
    assert gen["output_type"] == "generate_until" and gen["doc_to_target"] == "answer"
    assert gen["metric_list"][0]["metric"] == "exact_match"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(image="nope.png"), r"questions\.jsonl:1: image 'nope\.png' not found"),
        (lambda r: r.update(answer="purple"), r":1: answer 'purple' is not one of"),
        (lambda r: r.update(answer="F"), r":1: answer 'F' is out of range"),
        (lambda r: r.pop("options"), r":1: missing field\(s\) \['options'\]"),
        (lambda r: r.update(options=["red", "red"]), r":1: options must be 2\+ distinct"),
    ],
)
def test_broken_benchmark_sets_name_file_and_line(bench_set, tmp_path, change, message):
    folder = tmp_path / "set"
    shutil.copytree(bench_set, folder)
    lines = (folder / "questions.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    change(row)
    (folder / "questions.jsonl").write_text("\n".join([json.dumps(row), *lines[1:]]) + "\n")
    with pytest.raises(BenchmarkSetError, match=message):
        read_benchmark_set(folder)
    with pytest.raises(BenchmarkSetError, match="duplicate question_id"):
        (folder / "questions.jsonl").write_text(f"{lines[1]}\n{lines[1]}\n")
        read_benchmark_set(folder)


# ---- the results parser -----------------------------------------------------------------------
def test_parser_reads_a_results_file_written_by_lmms_eval():
    data = json.loads(FIXTURE.read_text())
    assert task_metrics(data, MC.task) == {"acc": 1.0}  # stderr entries and alias dropped
    assert benchmark_rows("clip_tiny", MC, FIXTURE) == [
        ScoreRow("clip_tiny", "vislaw_mc", "vislaw_mc", "acc", 1.0)
    ]
    assert benchmark_rows("clip_tiny", GEN, FIXTURE)[0].metric == "exact_match"


def test_parser_errors_name_the_file_and_what_is_missing(tmp_path):
    data = json.loads(FIXTURE.read_text())
    path = tmp_path / "r.json"

    def rows_of(changed: dict, bench: Benchmark = MC):
        path.write_text(json.dumps(changed))
        return benchmark_rows("e", bench, path)

    with pytest.raises(ResultsError, match=r"r\.json: task 'vislaw_x' not in results"):
        rows_of(data, Benchmark("x", "vislaw_x", "acc"))
    with pytest.raises(ResultsError, match=r"no metric 'f1'.*found: \['acc'\]"):
        rows_of(data, Benchmark("x", MC.task, "f1"))
    broken = copy.deepcopy(data)
    broken["results"][MC.task]["acc,none"] = "N/A"
    with pytest.raises(ResultsError, match="'N/A', not a finite number"):
        rows_of(broken)
    with pytest.raises(ResultsError, match="not an lmms-eval results file"):
        rows_of({"config": {}})


def test_table_has_one_row_per_metric_and_round_trips(tmp_path):
    mme = get_benchmark("mme")
    results = {
        "results": {
            "mme": {
                "alias": "mme",
                "mme_cognition_score,none": 301.5,
                "mme_perception_score,none": 1502.7,
            }
        }
    }
    (tmp_path / "mme.json").write_text(json.dumps(results))
    rows = benchmark_rows("clip336", mme, tmp_path / "mme.json")
    assert [(r.metric, r.score) for r in rows] == [
        ("mme_perception_score", 1502.7),
        ("mme_cognition_score", 301.5),
    ]
    path = write_table(
        [*rows, ScoreRow("clip336", "vislaw_mc", "vislaw_mc", "acc", 0.1)], tmp_path / "t.csv"
    )
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert read_table(path)[0] == rows[0] and read_table(path)[2].score == 0.1


# ---- the plugin through lmms-eval -------------------------------------------------------------
@pytest.mark.slow
def test_plugin_answers_local_tasks_through_the_lmms_eval_cli(stage2, tasks_dir, tmp_path):
    """The stock CLI finds `--model vislaw` by entry point; both request types score 1.0."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lmms_eval", "--model", "vislaw"]
    command += ["--model_args", f"pretrained={stage2},max_new_tokens=8", "--batch_size", "2"]
    command += ["--tasks", f"{MC.task},{GEN.task}", "--include_path", str(tasks_dir)]
    command += ["--output_path", str(out), "--log_samples", "--verbosity", "WARNING"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env={**os.environ, **OFFLINE}
    )
    (results_file,) = out.rglob("*_results.json")  # the tool's own, timestamped name
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert benchmark_rows("m", MC, results_file)[0].score == 1.0
    assert benchmark_rows("m", GEN, results_file)[0].score == 1.0
    # lmms-eval picks the option with argmin of what loglikelihood returns: our negative
    # log-likelihoods must put the right option lowest, by a margin.
    (samples_file,) = out.rglob(f"*_samples_{MC.task}.jsonl")
    for sample in map(json.loads, samples_file.read_text().splitlines()):
        nll = [float(value) for value, _ in sample["filtered_resps"]]
        target = int(sample["target"])
        assert min(range(len(nll)), key=nll.__getitem__) == target
        assert all(n > 0 for n in nll) and sorted(nll)[1] - nll[target] > 1.0
    (gen_samples,) = out.rglob(f"*_samples_{GEN.task}.jsonl")
    answers = [json.loads(line)["filtered_resps"] for line in gen_samples.read_text().splitlines()]
    assert answers == list(COLOURS)


def test_loglikelihood_matches_the_model_and_batching(stage2):
    """Summed NLL of the continuation equals the model's own loss on the same tokens, whether
    requests share an image (encoded once per batch), differ, or have none."""
    from lmms_eval.api.instance import Instance

    from vislaw.eval.plugin import VislawLMM
    from vislaw.vlm.chat_templates import Segment, tokenize_segments

    lm = VislawLMM(pretrained=str(stage2), batch_size=4)
    docs = [{"colour": c} for c in COLOURS] + [{"colour": None}]
    lm.task_dict = {"t": {"test": docs}}

    def visual(doc):
        return [square(doc["colour"])] if doc["colour"] else []

    pairs = [(0, " red"), (0, " green"), (1, " green"), (3, " red"), (2, " blue yellow")]
    requests = [
        Instance(
            "loglikelihood",
            (QUESTION + DEFAULT_POST_PROMPT, cont, visual, doc_id, "t", "test"),
            idx=i,
            metadata={"task": "t", "doc_id": doc_id, "repeats": 1},
        )
        for i, (doc_id, cont) in enumerate(pairs)
    ]
    scored = [r.text for r in lm.loglikelihood(requests)]
    vlm = lm.vlm
    for (doc_id, cont), (nll, greedy) in zip(pairs, scored, strict=True):
        image = visual(docs[doc_id])
        prompt = vlm.template.prompt(QUESTION + DEFAULT_POST_PROMPT, bool(image))
        segments = [Segment(prompt, False), Segment(cont, True)]
        ids, labels = tokenize_segments(segments, vlm.tokenizer, vlm.template.add_bos)
        batch = {
            "input_ids": torch.tensor([ids]),
            "attention_mask": torch.ones((1, len(ids)), dtype=torch.long),
            "labels": torch.tensor([labels]),
        }
        if image:
            batch["pixel_values"] = vlm.pixels(image)
        count = sum(label != -100 for label in labels)
        expected = vlm.model.sequence_nll(**batch).item() * count
        assert nll == pytest.approx(expected, rel=1e-4, abs=1e-4)
        assert isinstance(greedy, bool)
    assert scored[0][0] < scored[1][0] and scored[2][0] < scored[0][0] + scored[1][0]
    assert VislawLMM.cut_at_stops(" red</s>USER: x", ["\n", "</s>"]) == "red"


# ---- the runner: one process, fixed names, failures named -------------------------------------
@pytest.mark.slow
def test_runner_writes_fixed_names_and_names_the_failed_task(
    stage2, bench_set, tasks_dir, tmp_path
):
    from vislaw.eval.launch import evaluate_benchmarks
    from vislaw.eval.task_loop import EvaluationError

    broken_set, tasks = tmp_path / "broken_set", tmp_path / "tasks"
    shutil.copytree(bench_set, broken_set)
    shutil.copytree(tasks_dir, tasks)
    write_task_folder(broken_set, tasks, "vislaw_broken")
    (broken_set / "images" / "q1.png").unlink()  # after the folder was checked and written
    broken = Benchmark("broken", "vislaw_broken", "acc", local=True)
    out = tmp_path / "eval"
    benchmarks = [MC, broken, GEN]
    outputs = {b.name: out / f"{b.name}.json" for b in benchmarks}
    samples = {b.name: out / f"{b.name}.samples.jsonl" for b in benchmarks}
    with pytest.raises(EvaluationError) as error:
        evaluate_benchmarks(
            stage2, benchmarks, outputs, tasks, batch_size=4, samples=samples, seed=0
        )
    message = str(error.value)
    assert "broken (task vislaw_broken): FileNotFoundError" in message and "q1.png" in message
    assert [f.benchmark for f in error.value.failures] == ["broken"]
    assert benchmark_rows("m", MC, outputs[MC.name])[0].score == 1.0
    assert benchmark_rows("m", GEN, outputs[GEN.name])[0].score == 1.0
    assert len(samples[MC.name].read_text().splitlines()) == len(COLOURS)
    assert not outputs["broken"].exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{n}.json" for n in (MC.name, GEN.name)]
        + [f"{n}.samples.jsonl" for n in (MC.name, GEN.name)]
    )  # lmms-eval's timestamped files were moved or cleaned up
    with pytest.raises(EvaluationError, match="vislaw_none \\(task vislaw_none\\): task not found"):
        none = Benchmark("vislaw_none", "vislaw_none", "acc", local=True)
        evaluate_benchmarks(stage2, [none], {none.name: out / "x.json"}, tasks)


def test_released_llava_checkpoint_evaluates_through_the_plugin(stage2, tasks_dir, tmp_path):
    """A LLaVA-1.5-format folder (llava_llama config, LLM + model.mm_projector.* weights) with
    the workflow config naming its vision encoder scores like the stage folder it came from."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from vislaw.eval.launch import evaluate_benchmarks

    llava = tmp_path / "llava-v1.5-tiny"
    llava.mkdir()
    config = json.loads((stage2 / "llm" / "config.json").read_text())
    config.update(model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"])
    config.update(mm_projector_type="mlp2x_gelu", mm_vision_tower="openai/clip-vit-large-patch14")
    (llava / "config.json").write_text(json.dumps(config))
    state = load_file(stage2 / "llm" / "model.safetensors")
    projector = load_file(stage2 / "projector.safetensors")
    state.update({f"model.mm_projector.{k}": v for k, v in projector.items()})
    save_file(state, llava / "model.safetensors")
    AutoTokenizer.from_pretrained(stage2 / "llm").save_pretrained(llava)
    workflow = {
        "run": "released",
        "encoders": {
            "clip_tiny": {"family": "clip", "tiny": True, "input_size": 28, "patch_size": 14}
        },
        "data": {"root": str(tmp_path)},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow))
    out = tmp_path / "eval" / "mc.json"
    evaluate_benchmarks(
        llava,
        [MC],
        {MC.name: out},
        tasks_dir,
        model_extra={"config": tmp_path / "config.yaml", "encoder": "clip_tiny"},
    )
    assert benchmark_rows("llava", MC, out)[0].score == 1.0
    with pytest.raises(Exception, match="pass config=<workflow config> and encoder="):
        from vislaw.eval.plugin import load_model

        load_model(llava)


# ---- the rules --------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", ["per_encoder", "per_benchmark"])
def test_evaluate_jobs_follow_the_config_switch(project_root, isolated_config, jobs):
    """The demo's 12 encoders x 4 benchmarks: 12 lmms-eval jobs by default, 48 when split
    (planned in a temporary folder, whatever the user's results/demo holds)."""
    snakemake = Path(sys.executable).parent / "snakemake"
    path = isolated_config("config/demo.yaml")
    command = [str(snakemake), "-n", "--quiet", "rules", "--configfile", str(path)]
    command += ["--directory", str(path.parent)]
    command += ["--config", "targets=[evaluate]", f"eval={{jobs: {jobs}}}"]
    result = subprocess.run(command, cwd=project_root, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    counts = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts.setdefault(parts[0], int(parts[1]))
    demo = yaml.safe_load((project_root / "config" / "demo.yaml").read_text())
    n_encoders, n_benchmarks = len(demo["encoders"]), len(demo["benchmarks"])
    assert counts["evaluate"] == n_encoders * (n_benchmarks if jobs == "per_benchmark" else 1)
    assert counts["eval_tasks"] == 1 and counts["benchmarks_table"] == 1


def test_the_evaluate_step_refuses_a_stage_folder_edited_away_from_the_config(
    stage2, tasks_dir, tmp_path
):
    """run_evaluate (the evaluate rule's job) with the config and encoder: the plugin checks the
    folder's vlm.json against that encoder's spec, so a folder whose recorded spec was edited
    (input size 56 where the config says 28) is refused, naming the file and the key; the
    folder as written scores as before."""
    from vislaw.eval.launch import run_evaluate
    from vislaw.eval.settings import EvalSettings

    workflow = check_config(
        {
            "run": "checked",
            "encoders": {
                "clip_tiny": {"family": "clip", "tiny": True, "input_size": 28, "patch_size": 14}
            },
            "data": {"root": str(tmp_path)},
        }
    )
    settings = EvalSettings.from_config(workflow)
    out = tmp_path / "eval"
    outputs = {MC.name: out / f"{MC.name}.json"}
    run_evaluate(
        settings,
        stage2,
        [MC],
        outputs,
        include_path=tasks_dir,
        config=workflow,
        encoder="clip_tiny",
    )
    assert benchmark_rows("m", MC, outputs[MC.name])[0].score == 1.0
    assert sorted(p.name for p in out.iterdir()) == [f"{MC.name}.json"]  # config file removed

    edited = tmp_path / "edited"
    shutil.copytree(stage2, edited)
    info = json.loads((edited / "vlm.json").read_text())
    info["encoder"]["input_size"] = 56
    (edited / "vlm.json").write_text(json.dumps(info))
    with pytest.raises(Exception, match="input_size") as error:
        run_evaluate(
            settings,
            edited,
            [MC],
            {MC.name: tmp_path / "edited_eval" / "mc.json"},
            include_path=tasks_dir,
            config=workflow,
            encoder="clip_tiny",
        )
    assert "vlm.json" in str(error.value)
    assert not (tmp_path / "edited_eval" / "mc.json").exists()

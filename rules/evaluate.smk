# Benchmarks: the stock lmms-eval (PyPI) runs our model plugin on every stage-2 model; one
# fixed-name results JSON per encoder and benchmark, gathered into scores/benchmarks.csv.
# Jobs: config eval.jobs = per_encoder (default: one lmms-eval process per encoder runs all its
# benchmarks, so lmms-eval's start (~5-10 s) and the model load are paid once per encoder) or
# per_benchmark (one job per encoder x benchmark, for a wide cluster). A benchmark whose GPT judge
# is unavailable is written as not scored (NaN + reason in benchmarks.csv). See docs/evaluation.md.
from vislaw.eval.tasks import resolve_benchmarks

EVAL_BENCHMARKS = {b.name: b for b in resolve_benchmarks(config)}
LOCAL_BENCHMARKS = [name for name, b in EVAL_BENCHMARKS.items() if b.local]
EVAL_DIR = f"{RUN_DIR}/eval"
STAGE2_DONE = f"{RUN_DIR}/stage2/{{encoder}}/vlm.json"
EVAL_RESULT = f"{EVAL_DIR}/{{encoder}}/{{benchmark}}.json"
EVAL_SAMPLES = f"{EVAL_DIR}/{{encoder}}/{{benchmark}}.samples.jsonl"
# A local benchmark's task folder (its YAML stands for the folder): .format(benchmark name).
LOCAL_TASK_YAML = f"{EVAL_DIR}/tasks/{{0}}/{{0}}.yaml"


wildcard_constraints:
    benchmark=_alternation(EVAL_BENCHMARKS),


if LOCAL_BENCHMARKS:

    rule eval_tasks:
        # lmms-eval task folders (YAML + questions) built from the local benchmark sets.
        input:
            data_inputs,
        output:
            [LOCAL_TASK_YAML.format(n) for n in LOCAL_BENCHMARKS],
        log:
            f"{LOG_DIR}/eval_tasks.log",
        benchmark:
            f"{BENCH_DIR}/eval_tasks.tsv"
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("eval_tasks"),
        params:
            sets_root=data_path("benchmark_root"),
        script:
            "../workflow_scripts/eval_tasks.py"


if config["eval"]["jobs"] == "per_encoder":

    rule evaluate:
        input:
            model=STAGE2_DONE,
            prepared=prepared(encoder=True, benchmarks=True),
            tasks=[LOCAL_TASK_YAML.format(n) for n in LOCAL_BENCHMARKS],
        output:
            results=expand(EVAL_RESULT, benchmark=EVAL_BENCHMARKS, allow_missing=True),
            samples=expand(EVAL_SAMPLES, benchmark=EVAL_BENCHMARKS, allow_missing=True),
        log:
            f"{LOG_DIR}/evaluate/{{encoder}}.log",
        benchmark:
            f"{BENCH_DIR}/evaluate/{{encoder}}.tsv"
        conda:
            "../envs/lmms_eval.yaml"
        threads: rule_resources("evaluate")["cpus_per_task"]
        resources:
            **rule_resources("evaluate"),
        script:
            "../workflow_scripts/evaluate.py"

else:

    rule evaluate:
        input:
            model=STAGE2_DONE,
            prepared=prepared(encoder=True, benchmarks=True),
            # a local benchmark's task folder; lmms-eval's own tasks need none
            tasks=lambda wc: (
                [LOCAL_TASK_YAML.format(wc.benchmark)]
                if EVAL_BENCHMARKS[wc.benchmark].local
                else []
            ),
        output:
            results=EVAL_RESULT,
            samples=EVAL_SAMPLES,
        log:
            f"{LOG_DIR}/evaluate/{{encoder}}/{{benchmark}}.log",
        benchmark:
            f"{BENCH_DIR}/evaluate/{{encoder}}/{{benchmark}}.tsv"
        conda:
            "../envs/lmms_eval.yaml"
        threads: rule_resources("evaluate")["cpus_per_task"]
        resources:
            **rule_resources("evaluate"),
        script:
            "../workflow_scripts/evaluate.py"


rule benchmarks_table:
    # The tidy table the law reads: encoder, benchmark, task, metric, score.
    input:
        expand(EVAL_RESULT, encoder=ENCODERS, benchmark=EVAL_BENCHMARKS),
    output:
        report(
            f"{RUN_DIR}/scores/benchmarks.csv",
            caption="../report/scores.rst",
            category="Scores",
        ),
    log:
        f"{LOG_DIR}/benchmarks_table.log",
    benchmark:
        f"{BENCH_DIR}/benchmarks_table.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("benchmarks_table"),
    params:
        entries=[(e, b) for e in ENCODERS for b in EVAL_BENCHMARKS],
    script:
        "../workflow_scripts/benchmarks_table.py"

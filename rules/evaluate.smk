# Benchmarks: the stock lmms-eval (PyPI) runs our model plugin on every stage-2 model; one
# fixed-name results JSON per encoder and benchmark, gathered into scores/benchmarks.csv.
# Jobs: config eval.jobs = per_encoder (default: one lmms-eval process per encoder runs all its
# benchmarks, so lmms-eval's start (~5-10 s) and the model load are paid once per encoder) or
# per_benchmark (one job per encoder x benchmark, for a wide cluster). A benchmark whose GPT judge
# is unavailable is written as not scored (NaN + reason in benchmarks.csv). See docs/evaluation.md.
from vislaw.eval.tasks import resolve_benchmarks

EVAL_BENCHMARKS = {b.name: b for b in resolve_benchmarks(config)}
LOCAL_BENCHMARKS = [name for name, b in EVAL_BENCHMARKS.items() if b.local]
STAGE2_DONE = LAYOUT.stage_info("stage2", "{encoder}")
EVAL_RESULT = LAYOUT.eval_result("{encoder}", "{benchmark}")
EVAL_SAMPLES = LAYOUT.eval_samples("{encoder}", "{benchmark}")


wildcard_constraints:
    benchmark=_alternation(EVAL_BENCHMARKS),


if LOCAL_BENCHMARKS:

    rule eval_tasks:
        # lmms-eval task folders (YAML + questions) built from the local benchmark sets.
        input:
            data_inputs,
        output:
            [LAYOUT.eval_task_yaml(n) for n in LOCAL_BENCHMARKS],
        log:
            LAYOUT.log("eval_tasks"),
        benchmark:
            LAYOUT.benchmark("eval_tasks")
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("eval_tasks"),
        params:
            settings=rule_settings("eval_tasks"),
            sets_root=data_path("benchmark_root"),
        script:
            "../workflow_scripts/eval_tasks.py"


if config["eval"]["jobs"] == "per_encoder":

    rule evaluate:
        input:
            model=STAGE2_DONE,
            model_files=stage_files("stage2"),
            prepared=prepared(encoder=True, benchmarks=True),
            tasks=[LAYOUT.eval_task_yaml(n) for n in LOCAL_BENCHMARKS],
        output:
            results=expand(EVAL_RESULT, benchmark=EVAL_BENCHMARKS, allow_missing=True),
            samples=expand(EVAL_SAMPLES, benchmark=EVAL_BENCHMARKS, allow_missing=True),
        log:
            LAYOUT.log("evaluate", "{encoder}"),
        benchmark:
            LAYOUT.benchmark("evaluate", "{encoder}")
        conda:
            "../envs/lmms_eval.yaml"
        threads: rule_resources("evaluate")["cpus_per_task"]
        resources:
            **rule_resources("evaluate"),
        params:
            settings=rule_settings("evaluate"),
        script:
            "../workflow_scripts/evaluate.py"

else:

    rule evaluate:
        input:
            model=STAGE2_DONE,
            model_files=stage_files("stage2"),
            prepared=prepared(encoder=True, benchmarks=True),
            # a local benchmark's task folder; lmms-eval's own tasks need none
            tasks=lambda wc: (
                [LAYOUT.eval_task_yaml(wc.benchmark)]
                if EVAL_BENCHMARKS[wc.benchmark].local
                else []
            ),
        output:
            results=EVAL_RESULT,
            samples=EVAL_SAMPLES,
        log:
            LAYOUT.log("evaluate", "{encoder}", "{benchmark}"),
        benchmark:
            LAYOUT.benchmark("evaluate", "{encoder}", "{benchmark}")
        conda:
            "../envs/lmms_eval.yaml"
        threads: rule_resources("evaluate")["cpus_per_task"]
        resources:
            **rule_resources("evaluate"),
        params:
            settings=rule_settings("evaluate"),
        script:
            "../workflow_scripts/evaluate.py"


rule benchmarks_table:
    # The tidy table the law reads: encoder, benchmark, task, metric, score.
    input:
        expand(EVAL_RESULT, encoder=ENCODERS, benchmark=EVAL_BENCHMARKS),
    output:
        report(
            LAYOUT.benchmarks_table,
            caption="../report/scores.rst",
            category="Scores",
        ),
    log:
        LAYOUT.log("benchmarks_table"),
    benchmark:
        LAYOUT.benchmark("benchmarks_table")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("benchmarks_table"),
    params:
        settings=rule_settings("benchmarks_table"),
        entries=[(e, b) for e in ENCODERS for b in EVAL_BENCHMARKS],
    script:
        "../workflow_scripts/benchmarks_table.py"

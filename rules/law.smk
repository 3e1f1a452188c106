# The AC law: fit score ~ quad(A, C) per benchmark, plot it, simulate the AC policy.
# Input: law.scores_table when set (e.g. the paper's released table), else the tidy table of
# this run's own measurements (written by the scores stage).

LAW_TABLE = config["law"]["scores_table"] or f"{RUN_DIR}/scores/law_input.csv"
LAW_FILES = [
    "r2.csv",
    "coefficients.csv",
    "fit_stats.csv",
    "predictions.csv",
    "policy.csv",
    "policy_curves.csv",
    "law.png",
    "law.svg",
    "law_overview.png",
    "summary.md",
] + (["policy_strategies.csv"] if config["law"]["strategies"] else [])


rule law:
    input:
        scores=LAW_TABLE,
    output:
        [law_output(name) for name in LAW_FILES],
    log:
        f"{LOG_DIR}/law.log",
    benchmark:
        f"{BENCH_DIR}/law.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("law"),
    script:
        "../workflow_scripts/law.py"


if not config["law"]["scores_table"]:

    rule law_input:
        # This run's measured A, C and benchmark scores as the law's tidy table.
        input:
            a=f"{RUN_DIR}/scores/a_scores.csv",
            c=f"{RUN_DIR}/scores/c_scores.csv",
            benchmarks=f"{RUN_DIR}/scores/benchmarks.csv",
        output:
            f"{RUN_DIR}/scores/law_input.csv",
        log:
            f"{LOG_DIR}/law_input.log",
        benchmark:
            f"{BENCH_DIR}/law_input.tsv"
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("law_input"),
        script:
            "../workflow_scripts/law_input.py"

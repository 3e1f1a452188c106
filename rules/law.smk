# The AC law: fit score ~ quad(A, C) per benchmark, plot it, simulate the AC policy.
# Input: law.scores_table when set (e.g. the paper's released table), else the tidy table of
# this run's own measurements (written by the scores stage).

LAW_TABLE = config["law"]["scores_table"] or LAYOUT.law_input
# One figure per configured benchmark (law/figures/<benchmark>.png|svg|pdf): declared here, so
# the DAG and the report see them; a benchmark no encoder scored gets a figure that says so.
LAW_FILES = law_files(config["law"]["strategies"], config["benchmarks"])


rule law:
    input:
        scores=LAW_TABLE,
    output:
        [law_output(name) for name in LAW_FILES],
    log:
        LAYOUT.log("law"),
    benchmark:
        LAYOUT.benchmark("law")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("law"),
    params:
        settings=rule_settings("law"),
    script:
        "../workflow_scripts/law.py"


if not config["law"]["scores_table"]:

    rule law_input:
        # This run's measured A, C and benchmark scores as the law's tidy table.
        input:
            a=LAYOUT.a_scores_table,
            c=LAYOUT.c_scores_table,
            benchmarks=LAYOUT.benchmarks_table,
        output:
            LAYOUT.law_input,
        log:
            LAYOUT.log("law_input"),
        benchmark:
            LAYOUT.benchmark("law_input")
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("law_input"),
        params:
            settings=rule_settings("law_input"),
        script:
            "../workflow_scripts/law_input.py"

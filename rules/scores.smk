# C score: zero-shot SPair-71k keypoint correspondence from each encoder's cached features.


rule c_score:
    input:
        features=f"{RUN_DIR}/features/{{encoder}}.h5",
        # A fusion's member files: the C score L2-normalises each member's channels.
        members=lambda wc: [
            f"{RUN_DIR}/features/{m.name}.h5" for m in SPECS[wc.encoder].members
        ],
        data=data_inputs,
        checked=data_checked("spair"),
    output:
        f"{RUN_DIR}/scores/c_score/{{encoder}}.csv",
    log:
        f"{LOG_DIR}/c_score/{{encoder}}.log",
    benchmark:
        f"{BENCH_DIR}/c_score/{{encoder}}.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: rule_resources("c_score")["cpus_per_task"]
    resources:
        **rule_resources("c_score"),
    script:
        "../workflow_scripts/c_score.py"


rule c_scores_table:
    input:
        expand(f"{RUN_DIR}/scores/c_score/{{encoder}}.csv", encoder=ENCODERS),
    output:
        f"{RUN_DIR}/scores/c_scores.csv",
    log:
        f"{LOG_DIR}/c_scores_table.log",
    benchmark:
        f"{BENCH_DIR}/c_scores_table.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("c_scores_table"),
    script:
        "../workflow_scripts/c_scores_table.py"

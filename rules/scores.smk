# C score: zero-shot SPair-71k keypoint correspondence from each encoder's cached features.


rule c_score:
    input:
        features=LAYOUT.features("{encoder}"),
        # A fusion's member files: the C score L2-normalises each member's channels.
        members=lambda wc: [LAYOUT.features(m.name) for m in SPECS[wc.encoder].members],
        data=data_inputs,
        checked=data_checked("spair"),
    output:
        LAYOUT.c_score("{encoder}"),
    log:
        LAYOUT.log("c_score", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("c_score", "{encoder}")
    conda:
        "../envs/analysis.yaml"
    threads: rule_resources("c_score")["cpus_per_task"]
    resources:
        **rule_resources("c_score"),
    params:
        settings=rule_settings("c_score"),
    script:
        "../workflow_scripts/c_score.py"


rule c_scores_table:
    input:
        [LAYOUT.c_score(e) for e in ENCODERS],
    output:
        LAYOUT.c_scores_table,
    log:
        LAYOUT.log("c_scores_table"),
    benchmark:
        LAYOUT.benchmark("c_scores_table")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("c_scores_table"),
    params:
        settings=rule_settings("c_scores_table"),
    script:
        "../workflow_scripts/c_scores_table.py"

# The HTML report (snakemake --report): the law plot, score tables and training curves.


rule training_curves:
    input:
        infos=[LAYOUT.stage_info(s, e) for s in STAGES for e in ENCODERS],
        # the curves are read from each stage folder's loss.csv
        losses=[LAYOUT.stage_loss(s, e) for s in STAGES for e in ENCODERS],
    output:
        report(
            LAYOUT.training_curves,
            caption="../report/training_curves.rst",
            category="Training",
        ),
    log:
        LAYOUT.log("training_curves"),
    benchmark:
        LAYOUT.benchmark("training_curves")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("training_curves"),
    params:
        settings=rule_settings("training_curves"),
    script:
        "../workflow_scripts/training_curves.py"

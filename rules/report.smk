# The HTML report (snakemake --report; `make report`): every output marked with report() in
# the rules (figures, the training curves, LMVR's token maps) and the run's tables and texts,
# rendered to HTML here because the report shows CSV and Markdown files only as downloads.
from vislaw.report_tables import run_pages

# [category, name, source, title] of every table and text the config's targets make.
REPORT_PAGES = run_pages(config, LAYOUT, LAW_FILES)
STAGE_TARGETS["report"] = lambda: [LAYOUT.training_curves, LAYOUT.report_tables]


rule report_tables:
    input:
        [source for *_, source, _ in REPORT_PAGES],
    output:
        report(
            directory(LAYOUT.report_tables),
            patterns=["{category}/{name}.html"],
            caption="../report/tables.rst",
            category="{category}",
        ),
    log:
        LAYOUT.log("report_tables"),
    benchmark:
        LAYOUT.benchmark("report_tables")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("report_tables"),
    params:
        settings=rule_settings("report_tables"),
        pages=REPORT_PAGES,
    script:
        "../workflow_scripts/report_tables.py"


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

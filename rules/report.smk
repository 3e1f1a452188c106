# The HTML report (snakemake --report; `make report`): every output marked with report() in
# the rules (figures, the training curves, LMVR's token maps) and the run's tables and texts,
# rendered to HTML here because the report shows CSV and Markdown files only as downloads.
from vislaw.layout import LAW_PAGES


def report_pages():
    """[category, name, source, title] of every table and text this config's targets make."""
    targets = set(config["targets"])
    own_law = "law" in targets and not config["law"]["scores_table"]
    pages = []
    if targets & {"a_score", "policy"} or own_law:
        pages.append(["Scores", "a_scores", LAYOUT.a_scores_table, "A scores"])
    if targets & {"c_score", "policy"} or own_law:
        pages.append(["Scores", "c_scores", LAYOUT.c_scores_table, "C scores"])
    if "evaluate" in targets or own_law:
        pages.append(
            ["Scores", "benchmarks", LAYOUT.benchmarks_table, "Benchmark scores"]
        )
    if "law" in targets:
        for file in LAW_PAGES:  # where the law writes them (law.strategies)
            if file in LAW_FILES:
                pages.append(
                    ["Law", Path(file).stem, LAYOUT.law_file(file), f"The law: {file}"]
                )
    if "policy" in targets:
        pages.append(["Policy", "rounds", LAYOUT.policy_rounds_table, "Policy rounds"])
        pages.append(
            [
                "Policy",
                "recommendation",
                LAYOUT.policy_recommendation,
                "Recommendation",
            ]
        )
    if "lmvr" in targets:
        pages.append(["LMVR", "probe", LAYOUT.lmvr_probe, "LMVR linear probe"])
    return pages


REPORT_PAGES = report_pages()
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

"""Rule `report_tables`: the run's tables and texts as HTML pages for the report."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.report_tables import Page, write_pages

    write_pages([Page.from_values(p) for p in snakemake.params.pages], snakemake.output[0])

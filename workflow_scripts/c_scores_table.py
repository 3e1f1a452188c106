"""Rule `c_scores_table`: gather every encoder's C-score row into one table."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.scores.correspondence.table import run_c_scores_table

    run_c_scores_table(list(snakemake.input), snakemake.output[0])

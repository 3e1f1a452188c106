"""Rule `policy_report`: rounds.csv, recommendation.md and the predicted-vs-measured plot."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from pathlib import Path

    from vislaw.law.mode import write_policy_outputs

    write_policy_outputs(list(snakemake.input), snakemake.output, snakemake.params.budget)
    print(Path(snakemake.output.recommendation).read_text())

"""Rule `check_data`: validate one dataset (every bad item, with counts); fail if any is bad."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.check import check_dataset

    report = check_dataset(check_config(snakemake.config), snakemake.wildcards.dataset)
    print(report.summary())
    report.write_or_raise(snakemake.output[0])

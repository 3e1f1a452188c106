"""Rule `check_data`: validate one dataset (every bad item, with counts); fail if any is bad."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.check import run_check_data
    from vislaw.data.settings import DataSettings

    data = DataSettings.from_config(check_config(snakemake.config))
    run_check_data(data, snakemake.wildcards.dataset, snakemake.output[0], snakemake.threads)

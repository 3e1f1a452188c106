"""Rule `prepare_data`: download, verify and unpack one data.sources entry (its marker last)."""

from vislaw.jobs import go_online, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

go_online()  # warm-start runs set the offline switches for every job
with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.prepare.sources import run_prepare_data

    run_prepare_data(
        check_config(snakemake.config), [snakemake.wildcards.source], done=snakemake.output[0]
    )

"""Rule `prepare_data`: download, verify and unpack one data.sources entry (its marker last)."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.prepare.sources import prepare_source

    marker = prepare_source(check_config(snakemake.config), snakemake.wildcards.source)
    print(f"prepared: {marker}")
    Path(snakemake.output[0]).touch()

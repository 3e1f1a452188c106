"""Rule `lmvr_probe`: linear probes on every encoder's LMVR and baseline features."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.lmvr.settings import LmvrSettings
    from vislaw.lmvr.steps import run_lmvr_probe

    settings = LmvrSettings.from_config(check_config(snakemake.config))
    run_lmvr_probe(settings, snakemake.params.root, snakemake.output[0])

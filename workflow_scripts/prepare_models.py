"""Rule `prepare_models`: every Hub repo the config loads into cache.hf_home (markers)."""

from vislaw.jobs import go_online, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

go_online()  # warm-start runs set the offline switches for every job
with job_log(snakemake.log[0]):
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare.hub import run_prepare_models

    config, specs = load_checked_config(snakemake.config)
    run_prepare_models(config, specs, done=snakemake.output[0])

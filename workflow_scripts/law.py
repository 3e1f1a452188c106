"""Rule `law`: fit the AC law on the scores table, simulate the AC policy, write law/."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.law.settings import LawSettings
    from vislaw.law.steps import run_law

    config = check_config(snakemake.config)
    settings = LawSettings.from_config(config)
    run_law(
        settings,
        snakemake.input.scores,
        settings.input_format,
        Path(snakemake.output[0]).parent,
        benchmarks=config["benchmarks"],
        encoders=config["encoders"],
        measured=settings.scores_table is None,
    )

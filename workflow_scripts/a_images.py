"""Rule `a_images`: the seeded image sample of every benchmark (same images for all encoders)."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.settings import DataSettings
    from vislaw.eval.tasks import resolve_benchmarks
    from vislaw.scores.a_images import run_a_images
    from vislaw.scores.settings import AScoreSettings

    config = check_config(snakemake.config)
    run_a_images(
        AScoreSettings.from_config(config),
        config["seed"],
        resolve_benchmarks(config),
        DataSettings.from_config(config).benchmarks_root(),
        snakemake.output,
    )

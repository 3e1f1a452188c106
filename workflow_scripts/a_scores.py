"""Rule `a_scores`: the A-score table from the cached embeddings and log-likelihoods."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.scores.a_table import run_a_scores
    from vislaw.scores.settings import AScoreSettings

    config = check_config(snakemake.config)
    run_a_scores(
        AScoreSettings.from_config(config),
        list(config["encoders"]),
        list(config["benchmarks"]),
        lambda bench, enc: snakemake.params.embedding.format(benchmark=bench, encoder=enc),
        snakemake.input.loglik,
        snakemake.output[0],
    )

"""Rule `embeddings`: one encoder's stage-1 embeddings of every benchmark sample, and A v3."""

from pathlib import Path

from vislaw.jobs import apply_runtime_settings, job_log, pick_device

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import load_checked_config
    from vislaw.scores.embeddings import embedding_job

    config, _ = load_checked_config(snakemake.config)
    benchmarks = list(config["benchmarks"])
    gpus = int(snakemake.resources.get("gpu", 0) or 0)
    if gpus > 1:  # one process per GPU, each on its share of images and captions
        from vislaw.scores.embeddings import embedding_job_on_ranks
        from vislaw.train.launch import write_run_config

        run_config = Path(snakemake.output.loglik).with_suffix(".run_config.yaml")
        write_run_config(config, run_config)
        embedding_job_on_ranks(
            run_config,
            Path(snakemake.input.stage1).parent,
            dict(zip(benchmarks, snakemake.input.samples, strict=True)),
            dict(zip(benchmarks, snakemake.output.embeddings, strict=True)),
            snakemake.output.loglik,
            gpus,
        )
        run_config.unlink(missing_ok=True)
    else:
        embedding_job(
            config,
            Path(snakemake.input.stage1).parent,
            dict(zip(benchmarks, snakemake.input.samples, strict=True)),
            dict(zip(benchmarks, snakemake.output.embeddings, strict=True)),
            snakemake.output.loglik,
            device=pick_device(config),
        )

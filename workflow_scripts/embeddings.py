"""Rule `embeddings`: one encoder's stage-1 embeddings of every benchmark sample, and A v3."""

from pathlib import Path

from vislaw.host import pick_device
from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import load_checked_config
    from vislaw.scores.embeddings import run_embeddings

    config, _ = load_checked_config(snakemake.config)
    benchmarks = list(config["benchmarks"])
    run_embeddings(
        config,
        Path(snakemake.input.stage1).parent,
        dict(zip(benchmarks, snakemake.input.samples, strict=True)),
        dict(zip(benchmarks, snakemake.output.embeddings, strict=True)),
        snakemake.output.loglik,
        gpus=int(snakemake.resources.get("gpu", 0) or 0),
        device=pick_device(config),
        encoder=snakemake.wildcards.encoder,  # stage 1 must record this encoder's spec
    )

"""Rule `evaluate`: the stock lmms-eval on one encoder's stage-2 model, one fixed-name results
JSON per benchmark (all of the encoder's benchmarks, or one with eval.jobs: per_benchmark)."""

from pathlib import Path

from vislaw.host import pick_device
from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive


def by_benchmark(paths):
    """{benchmark: path} for outputs named <benchmark>.json / <benchmark>.samples.jsonl."""
    return {Path(p).name.split(".")[0]: p for p in paths}


with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.config import check_config
    from vislaw.eval.launch import run_evaluate
    from vislaw.eval.settings import EvalSettings
    from vislaw.eval.tasks import resolve_benchmarks

    config = check_config(snakemake.config)
    outputs = by_benchmark(snakemake.output.results)
    run_evaluate(
        EvalSettings.from_config(config),
        Path(snakemake.input.model).parent,
        [b for b in resolve_benchmarks(config) if b.name in outputs],
        outputs,
        samples=by_benchmark(snakemake.output.samples),
        # <tasks>/<name>/<name>.yaml: lmms-eval indexes the folder that holds the task folders
        include_path=Path(snakemake.input.tasks[0]).parents[1] if snakemake.input.tasks else None,
        device=pick_device(config),
        seed=config["seed"],
        # accelerate launch across the job's GPUs (one lmms-eval process each)
        processes=max(1, int(snakemake.resources.get("gpu", 0) or 0)),
        # the stage folder must record this encoder's spec of the config (vlm.json checked)
        config=config,
        encoder=snakemake.wildcards.encoder,
    )

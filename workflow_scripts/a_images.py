"""Rule `a_images`: the seeded image sample of every benchmark (same images for all encoders)."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.eval.images import sample_lmms_task, sample_local_set, write_sample
    from vislaw.eval.tasks import resolve_benchmarks
    from vislaw.layout import data_path

    config = snakemake.config
    settings = config["a_score"]
    for bench, out in zip(resolve_benchmarks(config), snakemake.output, strict=True):
        if bench.local:
            items = sample_local_set(
                # local sets need data.benchmark_root (rule eval_tasks reads it too)
                data_path(config, "benchmark_root") / bench.name,
                bench.name,
                settings["n_images"],
                config["seed"],
            )
        else:
            items = sample_lmms_task(
                bench, settings["n_images"], config["seed"], Path(out).with_suffix("")
            )
        write_sample(out, bench.name, config["seed"], items)
        print(f"{bench.name}: {len(items)} images -> {out}")

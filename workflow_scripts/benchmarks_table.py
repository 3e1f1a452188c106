"""Rule `benchmarks_table`: every encoder's benchmark results into scores/benchmarks.csv."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.eval.results import run_benchmarks_table
    from vislaw.eval.tasks import resolve_benchmarks

    benchmarks = {b.name: b for b in resolve_benchmarks(check_config(snakemake.config))}
    entries = []
    for (encoder, name), path in zip(snakemake.params.entries, snakemake.input, strict=True):
        if not str(path).endswith(f"/{encoder}/{name}.json"):
            raise ValueError(f"input {path} does not belong to ({encoder}, {name})")
        entries.append((encoder, benchmarks[name], path))
    run_benchmarks_table(entries, snakemake.output[0])

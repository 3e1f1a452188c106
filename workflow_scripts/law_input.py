"""Rule `law_input`: join the measured A, C and benchmark scores into the law's tidy table."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.law.settings import LawSettings
    from vislaw.law.steps import run_law_input

    table = run_law_input(
        LawSettings.from_config(check_config(snakemake.config)),
        snakemake.input.a,
        snakemake.input.c,
        snakemake.input.benchmarks,
        snakemake.output[0],
    )
    print(table.to_string(index=False))

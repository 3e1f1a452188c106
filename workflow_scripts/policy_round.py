"""Checkpoint `policy_round`: the policy's next picks (or stop) from the scores so far."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.law.mode import run_round, write_round

    decision = run_round(
        check_config(snakemake.config),
        int(snakemake.wildcards.round),
        snakemake.input.a,
        snakemake.input.c,
        snakemake.params.results,
        snakemake.input.get("previous"),
    )
    write_round(snakemake.output[0], decision)
    print(f"round {decision['round']}: picks {decision['picks']}, stop {decision['stop']}")
    print(decision["why"])

"""Checkpoint `policy_round`: the policy's next picks (or stop) from the scores so far."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.eval.tasks import resolve_benchmarks
    from vislaw.law.settings import LawSettings, PolicySettings
    from vislaw.law.steps import run_policy_round

    config = check_config(snakemake.config)
    decision = run_policy_round(
        PolicySettings.from_config(config),
        LawSettings.from_config(config).a_definition,
        list(config["encoders"]),
        resolve_benchmarks(config),
        int(snakemake.wildcards.round),
        snakemake.input.a,
        snakemake.input.c,
        snakemake.params.results,
        snakemake.input.get("previous"),
        snakemake.output[0],
    )
    print(f"round {decision['round']}: picks {decision['picks']}, stop {decision['stop']}")
    print(decision["why"])

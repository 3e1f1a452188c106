"""Checkpoint `policy_round`: the policy's next picks (or stop) from the scores so far."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.eval.tasks import resolve_benchmarks
    from vislaw.law.settings import LawSettings, PolicySettings
    from vislaw.law.steps import PolicyRoundInputs, run_policy_round

    config = check_config(snakemake.config)
    inputs = PolicyRoundInputs(
        a_definition=LawSettings.from_config(config).a_definition,
        encoders=list(config["encoders"]),
        benchmarks=resolve_benchmarks(config),
        round_index=int(snakemake.wildcards.round),
        a_scores=snakemake.input.a,
        c_scores=snakemake.input.c,
        results=snakemake.params.results,
        previous=snakemake.input.get("previous"),
        output=snakemake.output[0],
    )
    decision = run_policy_round(PolicySettings.from_config(config), inputs)
    print(f"round {decision.round}: picks {decision.picks}, stop {decision.stop}")
    print(decision.why)

"""Rule `policy_report`: rounds.csv, recommendation.md and the predicted-vs-measured plot."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from pathlib import Path

    from vislaw.config import check_config
    from vislaw.law.settings import PolicySettings
    from vislaw.law.steps import run_policy_report

    outputs = {name: snakemake.output[name] for name in ("rounds", "recommendation", "plot")}
    run_policy_report(
        PolicySettings.from_config(check_config(snakemake.config)), list(snakemake.input), outputs
    )
    print(Path(outputs["recommendation"]).read_text())

"""Rule `training_curves`: plot every encoder's stage-1 and stage-2 loss."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.train.curves import run_training_curves

    run_training_curves(list(snakemake.input.infos), snakemake.output[0])

"""Rules `stage1` and `stage2`: train one encoder's stage (torchrun when the job has GPUs).

Stage 1 trains the projector (encoder and LLM frozen; ConvLLaVA's recipe adds its encoder
phases); stage 2 finetunes projector + LLM starting from the stage-1 folder."""

from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import load_checked_config
    from vislaw.resources import job_gpus
    from vislaw.train.launch import run_train_stage

    config, _ = load_checked_config(snakemake.config)
    gpus_per_node, nodes = job_gpus(snakemake.resources)
    run_train_stage(
        config,
        int(snakemake.params.stage),
        snakemake.wildcards.encoder,
        snakemake.params.out,
        stage1_dir=snakemake.params.get("stage1"),
        gpus=gpus_per_node,
        nodes=nodes,
    )

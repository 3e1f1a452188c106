"""Rule `tiny_llm`: the demo's random-init Llama and its locally trained tokenizer."""

from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import load_checked_config
    from vislaw.train.settings import LlmSettings
    from vislaw.train.tiny_llm import corpus_files, run_tiny_llm

    config, _ = load_checked_config(snakemake.config)
    run_tiny_llm(
        LlmSettings.from_config(config), config["seed"], corpus_files(config), snakemake.output[0]
    )

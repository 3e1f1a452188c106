"""Rule `lmvr`: one encoder's LMVR and baseline features (clean + corrupted) and token maps."""

from pathlib import Path

from vislaw.host import pick_device
from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.lmvr.settings import LmvrSettings
    from vislaw.lmvr.steps import run_lmvr
    from vislaw.pipeline import load_checked_config

    config, _ = load_checked_config(snakemake.config)
    run_lmvr(
        LmvrSettings.from_config(config),
        snakemake.wildcards.encoder,
        Path(snakemake.input.stage2).parent,
        snakemake.input.images[0],
        snakemake.params.features,
        snakemake.output.maps,
        device=pick_device(config),
    )

"""Rule `features`: encode the configured image set with one (non-fusion) encoder."""

from pathlib import Path

from vislaw.host import pick_device
from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.data.settings import DataSettings
    from vislaw.encoders.registry import encoder_spec
    from vislaw.features import FeaturesSettings, run_features, run_features_on_gpus
    from vislaw.pipeline import load_checked_config

    config, specs = load_checked_config(snakemake.config)
    spec = encoder_spec(specs, snakemake.wildcards.encoder)
    # An encoder its recipe trains (ConvLLaVA) is read with stage 1's trained tensors.
    stage1 = snakemake.input.get("stage1")
    stage1 = Path(stage1).parent if stage1 else None
    gpus = int(snakemake.resources.get("gpu", 0) or 0)
    if gpus > 1:  # one process per GPU, each on its share of the images
        threads = max(1, snakemake.threads // gpus)
        run_features_on_gpus(
            config, spec, snakemake.output[0], gpus, stage1=stage1, threads=threads
        )
    else:  # one process (CPU or one GPU): the whole image set
        run_features(
            FeaturesSettings.from_config(config),
            DataSettings.from_config(config),
            spec,
            snakemake.output[0],
            device=pick_device(config),
            stage1=stage1,
        )

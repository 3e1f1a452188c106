"""Rule `features`: encode the configured image set with one (non-fusion) encoder."""

from pathlib import Path

from vislaw.jobs import apply_runtime_settings, job_log, pick_device

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import encoder_spec, load_checked_config

    config, specs = load_checked_config(snakemake.config)
    spec = encoder_spec(specs, snakemake.wildcards.encoder)
    # An encoder its recipe trains (ConvLLaVA) is read with stage 1's trained tensors.
    stage1 = snakemake.input.get("stage1")
    stage1 = Path(stage1).parent if stage1 else None
    gpus = int(snakemake.resources.get("gpu", 0) or 0)
    if gpus > 1:  # one process per GPU, each on its share of the images (vislaw.features)
        from vislaw.features import extract_features_on_ranks
        from vislaw.train.launch import write_run_config

        out = Path(snakemake.output[0])
        run_config = out.with_name(f"{out.stem}.run_config.yaml")
        write_run_config(config, run_config)
        extract_features_on_ranks(
            run_config,
            spec.name,
            out,
            gpus,
            stage1=stage1,
            threads=max(1, snakemake.threads // gpus),
        )
        run_config.unlink(missing_ok=True)
    else:  # one process (CPU or one GPU): the whole image set
        from vislaw.data.settings import DataSettings
        from vislaw.features import FeaturesSettings, run_features

        run_features(
            FeaturesSettings.from_config(config),
            DataSettings.from_config(config),
            spec,
            snakemake.output[0],
            device=pick_device(config),
            stage1=stage1,
        )

"""Rule `features`: encode the configured image set with one (non-fusion) encoder."""

from vislaw.jobs import apply_runtime_settings, job_log, pick_device

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive


def extract_here(config, specs):
    """One process (CPU or one GPU): the whole image set."""
    from vislaw.features import extract_features, image_set

    folder, ids = image_set(config)
    # An encoder its recipe trains (ConvLLaVA) is read with stage 1's trained tensors.
    trained, source = {}, ""
    if snakemake.input.get("stage1"):
        from pathlib import Path

        from vislaw.vlm.checkpoints import read_encoder_weights

        stage1 = Path(snakemake.input.stage1).parent
        trained, source = read_encoder_weights(stage1), str(stage1)
    extract_features(
        specs[snakemake.wildcards.encoder],
        folder,
        ids,
        snakemake.output[0],
        batch_size=config["features"]["batch_size"],
        dtype=config["features"]["dtype"],
        device=pick_device(config),
        trained=trained,
        trained_source=source,
    )


with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.pipeline import load_checked_config

    config, specs = load_checked_config(snakemake.config)
    gpus = int(snakemake.resources.get("gpu", 0) or 0)
    if gpus > 1:  # one process per GPU, each on its share of the images (vislaw.features)
        from pathlib import Path

        from vislaw.features import extract_features_on_ranks
        from vislaw.train.launch import write_run_config

        out = Path(snakemake.output[0])
        run_config = out.with_name(f"{out.stem}.run_config.yaml")
        write_run_config(config, run_config)
        stage1 = snakemake.input.get("stage1")
        extract_features_on_ranks(
            run_config,
            snakemake.wildcards.encoder,
            out,
            gpus,
            stage1=Path(stage1).parent if stage1 else None,
            threads=max(1, snakemake.threads // gpus),
        )
        run_config.unlink(missing_ok=True)
    else:
        extract_here(config, specs)

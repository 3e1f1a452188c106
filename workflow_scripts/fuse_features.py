"""Rule `fuse_features`: concatenate the members' cached features along channels."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.encoders.registry import encoder_spec
    from vislaw.features import run_fuse_features
    from vislaw.pipeline import load_checked_config

    _, specs = load_checked_config(snakemake.config)
    spec = encoder_spec(specs, snakemake.wildcards.encoder)
    run_fuse_features(spec, list(snakemake.input), snakemake.output[0])

"""Rule `c_score`: one encoder's C score on SPair-71k from its cached features (one CSV row)."""

from vislaw.jobs import apply_runtime_settings, job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    apply_runtime_settings(snakemake.config, snakemake.threads)
    from vislaw.encoders.registry import encoder_spec
    from vislaw.features import FeaturesSettings
    from vislaw.pipeline import load_checked_config
    from vislaw.scores.correspondence.score import inputs_from_config, run_c_score

    config, specs = load_checked_config(snakemake.config)
    row = run_c_score(
        inputs_from_config(config),
        snakemake.input.features,
        snakemake.output[0],
        encoder=snakemake.wildcards.encoder,
        member_features=list(snakemake.input.members),
        # the file must record this encoder's spec and these settings (vislaw.io.provenance)
        spec=encoder_spec(specs, snakemake.wildcards.encoder),
        features_settings=FeaturesSettings.from_config(config),
    )
    print({k: row[k] for k in ("encoder", "pck10_image", "n_pairs", "n_points")})

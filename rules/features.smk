# Patch-token features of the configured image set, one HDF5 file per encoder.


rule features:
    input:
        data_inputs,
        prepared(name="spair", encoder=True),
        data_checked("spair"),
        stage1=trained_encoder_stage1,
        stage1_encoder=trained_encoder_weights,
    output:
        LAYOUT.features("{encoder}"),
    log:
        LAYOUT.log("features", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("features", "{encoder}")
    wildcard_constraints:
        encoder=BASE_RE,
    conda:
        env_for_encoder
    threads: rule_resources("features")["cpus_per_task"]
    resources:
        **rule_resources("features"),
    params:
        settings=rule_settings("features"),
    script:
        "../workflow_scripts/features.py"


rule fuse_features:
    # A fusion concatenates its members' cached features: each member is computed once.
    input:
        lambda wc: [LAYOUT.features(m.name) for m in SPECS[wc.encoder].members],
    output:
        LAYOUT.features("{encoder}"),
    log:
        LAYOUT.log("features", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("features", "{encoder}")
    wildcard_constraints:
        encoder=FUSION_RE,
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("fuse_features"),
    params:
        settings=rule_settings("fuse_features"),
    script:
        "../workflow_scripts/fuse_features.py"

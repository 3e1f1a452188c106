# LMVR (docs/lmvr.md): per encoder, its stage-2 MLLM describes a labelled ImageFolder (clean and
# corrupted copies); pooled LLM hidden states and the encoder's own pooled tokens go to HDF5 and
# a few token maps to PNG, in one job that loads the model once; then linear probes on both.
from vislaw.layout import LMVR_KINDS
from vislaw.lmvr.settings import lmvr_settings

LMVR = lmvr_settings(config)
LMVR_ENCODERS = list(LMVR.encoders)
LMVR_CONDITIONS = LMVR.condition_names


if SYNTHETIC:

    rule lmvr_images:
        # The demo's labelled set: shape classes drawn with the demo generator's shapes.
        input:
            data_inputs,
        output:
            directory(LAYOUT.lmvr_synthetic_images),
        log:
            LAYOUT.log("lmvr_images"),
        benchmark:
            LAYOUT.benchmark("lmvr_images")
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("lmvr_images"),
        params:
            settings=rule_settings("lmvr_images"),
        script:
            "../workflow_scripts/lmvr_images.py"


rule lmvr:
    input:
        stage2=LAYOUT.stage_info("stage2", "{encoder}"),
        stage2_files=stage_files("stage2"),
        images=lmvr_image_folder,
        prepared=prepared(encoder=True, name="lmvr"),
    output:
        **{
            kind: [LAYOUT.lmvr_feature("{encoder}", kind, c) for c in LMVR_CONDITIONS]
            for kind in LMVR_KINDS
        },
        responses=LAYOUT.lmvr_responses("{encoder}"),
        maps=report(
            directory(LAYOUT.lmvr_maps("{encoder}")),
            patterns=["{map}.png"],
            caption="../report/lmvr.rst",
            category="LMVR",
            subcategory="{encoder}",
        ),
    log:
        LAYOUT.log("lmvr", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("lmvr", "{encoder}")
    conda:
        env_for_encoder
    threads: rule_resources("lmvr")["cpus_per_task"]
    resources:
        **rule_resources("lmvr"),
    params:
        settings=rule_settings("lmvr"),
        features=lambda wc, output: Path(output.responses).parent,
    script:
        "../workflow_scripts/lmvr.py"


rule lmvr_probe:
    input:
        [
            LAYOUT.lmvr_feature(e, kind, c)
            for e in LMVR_ENCODERS
            for kind in LMVR_KINDS
            for c in LMVR_CONDITIONS
        ],
    output:
        LAYOUT.lmvr_probe,
    log:
        LAYOUT.log("lmvr_probe"),
    benchmark:
        LAYOUT.benchmark("lmvr_probe")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("lmvr_probe"),
    params:
        settings=rule_settings("lmvr_probe"),
        root=lambda wc, output: Path(output[0]).parent,
    script:
        "../workflow_scripts/lmvr_probe.py"

# LMVR (docs/lmvr.md): per encoder, its stage-2 MLLM describes a labelled ImageFolder (clean and
# corrupted copies); pooled LLM hidden states and the encoder's own pooled tokens go to HDF5 and
# a few token maps to PNG, in one job that loads the model once; then linear probes on both.
from vislaw.lmvr.settings import SYNTHETIC_FOLDER, lmvr_settings

LMVR = lmvr_settings(config)
LMVR_ENCODERS = list(LMVR.encoders)
LMVR_CONDITIONS = LMVR.condition_names
LMVR_DIR = f"{RUN_DIR}/lmvr"
LMVR_FEATURES = f"{LMVR_DIR}/features/{{encoder}}"


if SYNTHETIC:

    rule lmvr_images:
        # The demo's labelled set: shape classes drawn with the demo generator's shapes.
        input:
            data_inputs,
        output:
            directory(f"{DATA_ROOT}/{SYNTHETIC_FOLDER}"),
        log:
            f"{LOG_DIR}/lmvr_images.log",
        benchmark:
            f"{BENCH_DIR}/lmvr_images.tsv"
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("lmvr_images"),
        script:
            "../workflow_scripts/lmvr_images.py"


rule lmvr:
    input:
        stage2=f"{RUN_DIR}/stage2/{{encoder}}/vlm.json",
        images=lmvr_image_folder,
        prepared=prepared(encoder=True),
    output:
        lmvr=expand(
            f"{LMVR_FEATURES}/lmvr/{{condition}}.h5",
            condition=LMVR_CONDITIONS,
            allow_missing=True,
        ),
        baseline=expand(
            f"{LMVR_FEATURES}/baseline/{{condition}}.h5",
            condition=LMVR_CONDITIONS,
            allow_missing=True,
        ),
        responses=f"{LMVR_FEATURES}/responses.jsonl",
        maps=directory(f"{LMVR_DIR}/maps/{{encoder}}"),
    log:
        f"{LOG_DIR}/lmvr/{{encoder}}.log",
    benchmark:
        f"{BENCH_DIR}/lmvr/{{encoder}}.tsv"
    conda:
        lambda wc: f"../envs/{conda_env(SPECS[wc.encoder])}.yaml"
    threads: rule_resources("lmvr")["cpus_per_task"]
    resources:
        **rule_resources("lmvr"),
    params:
        features=lambda wc, output: Path(output.responses).parent,
    script:
        "../workflow_scripts/lmvr.py"


rule lmvr_probe:
    input:
        expand(
            f"{LMVR_FEATURES}/{{kind}}/{{condition}}.h5",
            encoder=LMVR_ENCODERS,
            kind=["lmvr", "baseline"],
            condition=LMVR_CONDITIONS,
        ),
    output:
        f"{LMVR_DIR}/probe.csv",
    log:
        f"{LOG_DIR}/lmvr_probe.log",
    benchmark:
        f"{BENCH_DIR}/lmvr_probe.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("lmvr_probe"),
    params:
        root=lambda wc, output: Path(output[0]).parent,
    script:
        "../workflow_scripts/lmvr_probe.py"

# Real inputs (docs/data.md). On a machine with internet (a login node):
#   snakemake prepare --configfile config.yaml
# downloads every data.sources entry and every Hub repo the config loads (into cache.hf_home);
# the other rules take the markers these leave as inputs, so a run with something missing stops
# before its first job (rules/common.smk: prepared). The prepare rules are local rules (never
# submitted to compute nodes) and their stamps are temporary: each `prepare` re-checks, and a
# source or repo already in place is skipped at once.
PREPARE_SOURCES = list(prepare_sources(config))


localrules:
    prepare,
    prepare_data,
    prepare_models,


wildcard_constraints:
    source=_alternation(PREPARE_SOURCES),


rule prepare:
    input:
        [LAYOUT.prepare_marker(s) for s in PREPARE_SOURCES],
        LAYOUT.prepare_models_marker,


rule prepare_data:
    # One source: download (resumable, sha256-checked), unpack atomically, write its marker.
    output:
        temp(LAYOUT.prepare_marker("{source}")),
    log:
        LAYOUT.log("prepare", "data-{source}"),
    conda:
        "../envs/transformers.yaml"
    script:
        "../workflow_scripts/prepare_data.py"


rule prepare_models:
    # Every encoder, the LLM and lmms-eval's datasets into cache.hf_home (allow_patterns).
    output:
        temp(LAYOUT.prepare_models_marker),
    log:
        LAYOUT.log("prepare", "models"),
    conda:
        # lmms-eval's env: its `datasets` builds the benchmark datasets' cache in the format the
        # evaluation jobs read (vislaw.prepare.dataset_cache); huggingface_hub is there too.
        "../envs/lmms_eval.yaml"
    script:
        "../workflow_scripts/prepare_models.py"


rule check_data:
    # Validates one dataset once (every bad item, with counts) before training or scoring.
    input:
        data_inputs,
        prepared(dataset=True),
    output:
        LAYOUT.data_check("{dataset}"),
    log:
        LAYOUT.log("check_data", "{dataset}"),
    benchmark:
        LAYOUT.benchmark("check_data", "{dataset}")
    wildcard_constraints:
        dataset="pretrain|instruct|spair",
    conda:
        "../envs/analysis.yaml"
    threads: rule_resources("check_data")["cpus_per_task"]  # image decoding threads
    resources:
        **rule_resources("check_data"),
    params:
        settings=rule_settings("check_data"),
    script:
        "../workflow_scripts/check_data.py"

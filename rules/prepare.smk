# Real inputs (docs/data.md). On a machine with internet (a login node):
#   snakemake prepare --configfile config.yaml
# downloads every data.sources entry and every Hub repo the config loads (into cache.hf_home);
# the other rules take the markers these leave as inputs, so a run with something missing stops
# before its first job (rules/common.smk: prepared). The prepare rules are local rules (never
# submitted to compute nodes) and their stamps are temporary: each `prepare` re-checks, and a
# source or repo already in place is skipped at once.
PREPARE_DIR = f"{RUN_DIR}/prepare"
PREPARE_SOURCES = list(prepare_sources(config))


localrules:
    prepare,
    prepare_data,
    prepare_models,


wildcard_constraints:
    source=_alternation(PREPARE_SOURCES),


rule prepare:
    input:
        expand(f"{PREPARE_DIR}/data-{{source}}.done", source=PREPARE_SOURCES),
        f"{PREPARE_DIR}/models.done",


rule prepare_data:
    # One source: download (resumable, sha256-checked), unpack atomically, write its marker.
    output:
        temp(f"{PREPARE_DIR}/data-{{source}}.done"),
    log:
        f"{LOG_DIR}/prepare/data-{{source}}.log",
    conda:
        "../envs/transformers.yaml"
    script:
        "../workflow_scripts/prepare_data.py"


rule prepare_models:
    # Every encoder, the LLM and lmms-eval's datasets into cache.hf_home (allow_patterns).
    output:
        temp(f"{PREPARE_DIR}/models.done"),
    log:
        f"{LOG_DIR}/prepare/models.log",
    conda:
        "../envs/transformers.yaml"
    script:
        "../workflow_scripts/prepare_models.py"


rule check_data:
    # Validates one dataset once (every bad item, with counts) before training or scoring.
    input:
        data_inputs,
        prepared(dataset=True),
    output:
        f"{RUN_DIR}/data_check/{{dataset}}.txt",
    log:
        f"{LOG_DIR}/check_data/{{dataset}}.log",
    benchmark:
        f"{BENCH_DIR}/check_data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset="pretrain|instruct|spair",
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("check_data"),
    script:
        "../workflow_scripts/check_data.py"

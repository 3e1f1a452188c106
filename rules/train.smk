# The MLLM (docs/training.md): the demo's tiny LLM, then per encoder stage 1 (projector on
# captions, encoder and LLM frozen) and stage 2 (projector + LLM on conversations, starting
# from stage 1). With GPUs in the rule's resources the job launches torchrun with that many
# processes (DeepSpeed ZeRO-2 / ZeRO-3); on the CPU it trains in the job's own process.
# Env: the encoder family's (every one holds DeepSpeed); for a fusion the registry's env that
# holds all members' stacks, not the light analysis env its cached features use.
TINY_LLM = bool(config["llm"].get("tiny"))
LLM_INPUTS = [LAYOUT.llm_dir] if TINY_LLM else []  # a hub/local LLM is no DAG input
STAGE1_LLM_OUTPUT = (
    {"llm": directory(LAYOUT.stage_llm("{encoder}", "stage1"))}
    if STAGE1_TRAINS_LLM
    else {}
)


if TINY_LLM:

    rule tiny_llm:
        # Random-init small Llama + a tokenizer trained on the demo's LLaVA JSON texts.
        input:
            data_inputs,
        output:
            directory(LAYOUT.llm_dir),
        log:
            LAYOUT.log("tiny_llm"),
        benchmark:
            LAYOUT.benchmark("tiny_llm")
        conda:
            "../envs/transformers.yaml"
        threads: rule_resources("tiny_llm")["cpus_per_task"]
        resources:
            **rule_resources("tiny_llm"),
        params:
            settings=rule_settings("tiny_llm"),
        script:
            "../workflow_scripts/tiny_llm.py"


rule stage1:
    input:
        data_inputs,
        LLM_INPUTS,
        prepared(encoder=True, llm=True),
        data_checked("pretrain"),
    output:
        projector=LAYOUT.stage_projector("stage1", "{encoder}"),
        info=LAYOUT.stage_info("stage1", "{encoder}"),
        loss=LAYOUT.stage_loss("stage1", "{encoder}"),
    log:
        LAYOUT.log("stage1", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("stage1", "{encoder}")
    wildcard_constraints:
        encoder=FROZEN_RE,
    conda:
        env_for_encoder
    threads: rule_resources("stage1")["cpus_per_task"]
    resources:
        **rule_resources("stage1"),
    params:
        settings=rule_settings("stage1"),
        stage=1,
        out=lambda wc, output: Path(output.info).parent,
    script:
        "../workflow_scripts/train_stage.py"


# Stage 1 of an encoder whose recipe trains it (ConvLLaVA, TRAINED_RE): the same job, which
# also writes the trained encoder tensors and, with train_llm, the LLM (outputs cannot be
# conditional, hence a second rule).
use rule stage1 as stage1_encoder with:
    output:
        **STAGE1_LLM_OUTPUT,
        projector=LAYOUT.stage_projector("stage1", "{encoder}"),
        info=LAYOUT.stage_info("stage1", "{encoder}"),
        loss=LAYOUT.stage_loss("stage1", "{encoder}"),
        encoder=LAYOUT.stage_encoder("stage1", "{encoder}"),
    wildcard_constraints:
        encoder=TRAINED_RE,


rule stage2:
    input:
        data_inputs,
        LLM_INPUTS,
        prepared(encoder=True, llm=True),
        data_checked("instruct"),
        stage1=LAYOUT.stage_info("stage1", "{encoder}"),
        stage1_files=stage_files("stage1"),
    output:
        projector=LAYOUT.stage_projector("stage2", "{encoder}"),
        llm=directory(LAYOUT.stage_llm("{encoder}")),
        info=LAYOUT.stage_info("stage2", "{encoder}"),
        loss=LAYOUT.stage_loss("stage2", "{encoder}"),
    log:
        LAYOUT.log("stage2", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("stage2", "{encoder}")
    wildcard_constraints:
        encoder=FROZEN_RE,
    conda:
        env_for_encoder
    threads: rule_resources("stage2")["cpus_per_task"]
    resources:
        **rule_resources("stage2"),
    params:
        settings=rule_settings("stage2"),
        stage=2,
        out=lambda wc, output: Path(output.info).parent,
        stage1=lambda wc, input: Path(input.stage1).parent,
    script:
        "../workflow_scripts/train_stage.py"


# Stage 2 of such an encoder: its folder carries stage 1's trained encoder tensors along.
use rule stage2 as stage2_encoder with:
    output:
        projector=LAYOUT.stage_projector("stage2", "{encoder}"),
        llm=directory(LAYOUT.stage_llm("{encoder}")),
        info=LAYOUT.stage_info("stage2", "{encoder}"),
        loss=LAYOUT.stage_loss("stage2", "{encoder}"),
        encoder=LAYOUT.stage_encoder("stage2", "{encoder}"),
    wildcard_constraints:
        encoder=TRAINED_RE,

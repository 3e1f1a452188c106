# The MLLM (docs/training.md): the demo's tiny LLM, then per encoder stage 1 (projector on
# captions, encoder and LLM frozen) and stage 2 (projector + LLM on conversations, starting
# from stage 1). With GPUs in the rule's resources the job launches torchrun with that many
# processes (DeepSpeed ZeRO-2 / ZeRO-3); on the CPU it trains in the job's own process.
# Env: the encoder family's (every one holds DeepSpeed); for a fusion the registry's env that
# holds all members' stacks, not the light analysis env its cached features use.
TINY_LLM = bool(config["llm"].get("tiny"))
LLM_DIR = f"{RUN_DIR}/llm"
LLM_INPUTS = [LLM_DIR] if TINY_LLM else []  # a hub/local LLM is no DAG input


if TINY_LLM:

    rule tiny_llm:
        # Random-init small Llama + a tokenizer trained on the demo's LLaVA JSON texts.
        input:
            data_inputs,
        output:
            directory(LLM_DIR),
        log:
            f"{LOG_DIR}/tiny_llm.log",
        benchmark:
            f"{BENCH_DIR}/tiny_llm.tsv"
        conda:
            "../envs/transformers.yaml"
        threads: rule_resources("tiny_llm")["cpus_per_task"]
        resources:
            **rule_resources("tiny_llm"),
        script:
            "../workflow_scripts/tiny_llm.py"


rule stage1:
    input:
        data_inputs,
        LLM_INPUTS,
        prepared(encoder=True, llm=True),
        data_checked("pretrain"),
    output:
        projector=f"{RUN_DIR}/stage1/{{encoder}}/projector.safetensors",
        info=f"{RUN_DIR}/stage1/{{encoder}}/vlm.json",
    log:
        f"{LOG_DIR}/stage1/{{encoder}}.log",
    benchmark:
        f"{BENCH_DIR}/stage1/{{encoder}}.tsv"
    conda:
        lambda wc: f"../envs/{conda_env(SPECS[wc.encoder])}.yaml"
    threads: rule_resources("stage1")["cpus_per_task"]
    resources:
        **rule_resources("stage1"),
    params:
        stage=1,
        out=lambda wc, output: Path(output.info).parent,
    script:
        "../workflow_scripts/train_stage.py"


rule stage2:
    input:
        data_inputs,
        LLM_INPUTS,
        prepared(encoder=True, llm=True),
        data_checked("instruct"),
        stage1=f"{RUN_DIR}/stage1/{{encoder}}/vlm.json",
    output:
        projector=f"{RUN_DIR}/stage2/{{encoder}}/projector.safetensors",
        llm=directory(f"{RUN_DIR}/stage2/{{encoder}}/llm"),
        info=f"{RUN_DIR}/stage2/{{encoder}}/vlm.json",
    log:
        f"{LOG_DIR}/stage2/{{encoder}}.log",
    benchmark:
        f"{BENCH_DIR}/stage2/{{encoder}}.tsv"
    conda:
        lambda wc: f"../envs/{conda_env(SPECS[wc.encoder])}.yaml"
    threads: rule_resources("stage2")["cpus_per_task"]
    resources:
        **rule_resources("stage2"),
    params:
        stage=2,
        out=lambda wc, output: Path(output.info).parent,
        stage1=lambda wc, input: Path(input.stage1).parent,
    script:
        "../workflow_scripts/train_stage.py"

# A score (docs/a_score.md): a seeded image sample per benchmark, embedded by every encoder's
# stage-1 model (post-projector tokens to HDF5), the caption log-likelihood, and the table.
A_BENCHMARKS = list(config["benchmarks"])
A_SAMPLE = LAYOUT.a_sample("{benchmark}")
EMBEDDING = LAYOUT.embedding("{benchmark}", "{encoder}")
A_LOGLIK = LAYOUT.a_loglik("{encoder}")


rule a_images:
    # One job draws every benchmark's sample (local sets need no lmms-eval import).
    input:
        data_inputs,
        prepared(benchmarks=True),
    output:
        expand(A_SAMPLE, benchmark=A_BENCHMARKS),
    log:
        LAYOUT.log("a_images"),
    benchmark:
        LAYOUT.benchmark("a_images")
    conda:
        "../envs/lmms_eval.yaml"
    resources:
        **rule_resources("a_images"),
    params:
        settings=rule_settings("a_images"),
    script:
        "../workflow_scripts/a_images.py"


rule embeddings:
    input:
        stage1=LAYOUT.stage_info("stage1", "{encoder}"),
        stage1_files=stage_files("stage1"),
        llm=LLM_INPUTS,
        samples=expand(A_SAMPLE, benchmark=A_BENCHMARKS),
        prepared=prepared(encoder=True, llm=True),
    output:
        embeddings=expand(EMBEDDING, benchmark=A_BENCHMARKS, allow_missing=True),
        loglik=A_LOGLIK,
    log:
        LAYOUT.log("embeddings", "{encoder}"),
    benchmark:
        LAYOUT.benchmark("embeddings", "{encoder}")
    conda:
        env_for_encoder
    threads: rule_resources("embeddings")["cpus_per_task"]
    resources:
        **rule_resources("embeddings"),
    params:
        settings=rule_settings("embeddings"),
    script:
        "../workflow_scripts/embeddings.py"


rule a_scores:
    input:
        a_score_references,
        embeddings=expand(EMBEDDING, benchmark=A_BENCHMARKS, encoder=ENCODERS),
        loglik=expand(A_LOGLIK, encoder=ENCODERS),
    output:
        report(
            LAYOUT.a_scores_table,
            caption="../report/scores.rst",
            category="Scores",
        ),
    log:
        LAYOUT.log("a_scores"),
    benchmark:
        LAYOUT.benchmark("a_scores")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("a_scores"),
    params:
        settings=rule_settings("a_scores"),
        embedding=lambda wc: EMBEDDING,
    script:
        "../workflow_scripts/a_scores.py"

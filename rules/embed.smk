# A score (docs/a_score.md): a seeded image sample per benchmark, embedded by every encoder's
# stage-1 model (post-projector tokens to HDF5), the caption log-likelihood, and the table.
A_BENCHMARKS = list(config["benchmarks"])
A_DIR = f"{RUN_DIR}/a_score"
A_SAMPLE = f"{A_DIR}/samples/{{benchmark}}.json"
EMBEDDING = f"{RUN_DIR}/embeddings/{{benchmark}}/{{encoder}}.h5"
A_LOGLIK = f"{A_DIR}/loglik/{{encoder}}.json"


rule a_images:
    # One job draws every benchmark's sample (local sets need no lmms-eval import).
    input:
        data_inputs,
        prepared(benchmarks=True),
    output:
        expand(A_SAMPLE, benchmark=A_BENCHMARKS),
    log:
        f"{LOG_DIR}/a_images.log",
    benchmark:
        f"{BENCH_DIR}/a_images.tsv"
    conda:
        "../envs/lmms_eval.yaml"
    resources:
        **rule_resources("a_images"),
    script:
        "../workflow_scripts/a_images.py"


rule embeddings:
    input:
        stage1=f"{RUN_DIR}/stage1/{{encoder}}/vlm.json",
        samples=expand(A_SAMPLE, benchmark=A_BENCHMARKS),
        prepared=prepared(encoder=True, llm=True),
    output:
        embeddings=expand(EMBEDDING, benchmark=A_BENCHMARKS, allow_missing=True),
        loglik=A_LOGLIK,
    log:
        f"{LOG_DIR}/embeddings/{{encoder}}.log",
    benchmark:
        f"{BENCH_DIR}/embeddings/{{encoder}}.tsv"
    conda:
        lambda wc: f"../envs/{conda_env(SPECS[wc.encoder])}.yaml"
    threads: rule_resources("embeddings")["cpus_per_task"]
    resources:
        **rule_resources("embeddings"),
    script:
        "../workflow_scripts/embeddings.py"


rule a_scores:
    input:
        a_score_references,
        embeddings=expand(EMBEDDING, benchmark=A_BENCHMARKS, encoder=ENCODERS),
        loglik=expand(A_LOGLIK, encoder=ENCODERS),
    output:
        report(
            f"{RUN_DIR}/scores/a_scores.csv",
            caption="../report/scores.rst",
            category="Scores",
        ),
    log:
        f"{LOG_DIR}/a_scores.log",
    benchmark:
        f"{BENCH_DIR}/a_scores.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("a_scores"),
    params:
        embedding=lambda wc: EMBEDDING,
    script:
        "../workflow_scripts/a_scores.py"

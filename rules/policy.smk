# The policy mode (docs/policy.md): A and C for every encoder (A needs stage 1 only), then
# stage 2 + evaluation only for the encoders the policy picks, one checkpoint per round.
# Round r reads the results of every earlier pick and writes the next picks (or stop).
import json

from vislaw.law.mode import read_round

POLICY_DIR = f"{RUN_DIR}/policy"
POLICY_ROUND = f"{POLICY_DIR}/rounds/{{round}}.json"
POLICY_SCORES_FILE = config["policy"]["scores_file"]
POLICY_PRIOR = (
    config["policy"]["prior_table"]
    if config["policy"]["strategy"] in ("bayes_ucb", "bayes_ei")
    else None
)


wildcard_constraints:
    round=r"\d+",


def policy_results(encoders):
    """(encoder, benchmark, results JSON) of every benchmark of these encoders."""
    return [
        (e, b, EVAL_RESULT.format(encoder=e, benchmark=b))
        for e in encoders
        for b in EVAL_BENCHMARKS
    ]


def policy_ordered(wildcards):
    """Encoders the rounds before this one ordered (reads the previous round's JSON)."""
    r = int(wildcards.round)
    if r == 0:
        return []
    last = read_round(checkpoints.policy_round.get(round=str(r - 1)).output[0])
    return list(last["ordered"]) + list(last["picks"])


def policy_round_inputs(wildcards):
    r = int(wildcards.round)
    inputs = {
        "a": f"{RUN_DIR}/scores/a_scores.csv",
        "c": f"{RUN_DIR}/scores/c_scores.csv",
        "extra": [p for p in (POLICY_SCORES_FILE, POLICY_PRIOR) if p],
    }
    if r > 0:
        inputs["previous"] = checkpoints.policy_round.get(round=str(r - 1)).output[0]
        inputs["results"] = [p for *_, p in policy_results(policy_ordered(wildcards))]
    return inputs


checkpoint policy_round:
    input:
        unpack(policy_round_inputs),
    output:
        POLICY_ROUND,
    log:
        f"{LOG_DIR}/policy/round_{{round}}.log",
    benchmark:
        f"{BENCH_DIR}/policy/round_{{round}}.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("policy_round"),
    params:
        # a changed policy (e.g. a larger budget) re-decides the rounds; finetunes are reused
        settings=json.dumps(config["policy"], sort_keys=True),
        results=lambda wc: policy_results(policy_ordered(wc)),
    script:
        "../workflow_scripts/policy_round.py"


def policy_rounds(wildcards):
    """Every round's JSON, up to the one that stops (each checkpoint is resolved in turn)."""
    paths, r = [], 0
    while True:
        path = checkpoints.policy_round.get(round=str(r)).output[0]
        paths.append(path)
        if read_round(path)["stop"]:
            return paths
        r += 1


rule policy_report:
    input:
        policy_rounds,
    output:
        rounds=report(
            f"{POLICY_DIR}/rounds.csv",
            caption="../report/policy.rst",
            category="Policy",
        ),
        recommendation=report(
            f"{POLICY_DIR}/recommendation.md",
            caption="../report/policy.rst",
            category="Policy",
        ),
        plot=report(
            f"{POLICY_DIR}/predicted_vs_measured.png",
            caption="../report/policy.rst",
            category="Policy",
        ),
    log:
        f"{LOG_DIR}/policy/report.log",
    benchmark:
        f"{BENCH_DIR}/policy/report.tsv"
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("policy_report"),
    params:
        budget=config["policy"]["budget"],
    script:
        "../workflow_scripts/policy_report.py"


STAGE_TARGETS["policy"] = lambda: [
    f"{POLICY_DIR}/rounds.csv",
    f"{POLICY_DIR}/recommendation.md",
    f"{POLICY_DIR}/predicted_vs_measured.png",
]

# Paths and input functions of the policy mode (rules/policy.smk; docs/policy.md).
from vislaw.law.policy_mode.rounds import read_round

POLICY_ROUND = LAYOUT.policy_round("{round}")
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
    return last.next_ordered


def policy_round_inputs(wildcards):
    r = int(wildcards.round)
    inputs = {
        "a": LAYOUT.a_scores_table,
        "c": LAYOUT.c_scores_table,
        "extra": [p for p in (POLICY_SCORES_FILE, POLICY_PRIOR) if p],
    }
    if r > 0:
        inputs["previous"] = checkpoints.policy_round.get(round=str(r - 1)).output[0]
        inputs["results"] = [p for *_, p in policy_results(policy_ordered(wildcards))]
    return inputs


def policy_rounds(wildcards):
    """Every round's JSON, up to the one that stops (each checkpoint is resolved in turn)."""
    paths, r = [], 0
    while True:
        path = checkpoints.policy_round.get(round=str(r)).output[0]
        paths.append(path)
        if read_round(path).stop:
            return paths
        r += 1

# The policy mode (docs/policy.md): A and C for every encoder (A needs stage 1 only), then
# stage 2 + evaluation only for the encoders the policy picks, one checkpoint per round.
# Round r reads the results of every earlier pick and writes the next picks (or stop).
# Paths and input functions: rules/policy_common.smk.


checkpoint policy_round:
    input:
        unpack(policy_round_inputs),
    output:
        POLICY_ROUND,
    log:
        LAYOUT.log("policy", "round_{round}"),
    benchmark:
        LAYOUT.benchmark("policy", "round_{round}")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("policy_round"),
    params:
        # a changed policy (e.g. a larger budget) re-decides the rounds; finetunes are reused
        settings=rule_settings("policy_round"),
        results=lambda wc: policy_results(policy_ordered(wc)),
    script:
        "../workflow_scripts/policy_round.py"


rule policy_report:
    input:
        policy_rounds,
    output:
        rounds=report(
            LAYOUT.policy_rounds_table,
            caption="../report/policy.rst",
            category="Policy",
        ),
        recommendation=report(
            LAYOUT.policy_recommendation,
            caption="../report/policy.rst",
            category="Policy",
        ),
        plot=report(
            LAYOUT.policy_plot,
            caption="../report/policy_figure.rst",
            category="Policy",
        ),
    log:
        LAYOUT.log("policy", "report"),
    benchmark:
        LAYOUT.benchmark("policy", "report")
    conda:
        "../envs/analysis.yaml"
    resources:
        **rule_resources("policy_report"),
    params:
        settings=rule_settings("policy_report"),
        budget=config["policy"]["budget"],
    script:
        "../workflow_scripts/policy_report.py"


STAGE_TARGETS["policy"] = lambda: [
    LAYOUT.policy_rounds_table,
    LAYOUT.policy_recommendation,
    LAYOUT.policy_plot,
]

# vislaw: the Law of Vision Representation in MLLMs, as a DAG.
# Real use: snakemake --profile profiles/slurm (config.yaml); demo: make demo (config/demo.yaml).


from pathlib import Path

from vislaw.config import check_rule_names, refuse_yte, rule_names_in

# config.yaml is the default; a --configfile on the command line replaces it rather than being
# merged into it (a demo config must not inherit the paper's encoders). A yte config is
# refused here, before Snakemake would evaluate it (--configfile files are evaluated earlier,
# by Snakemake itself; rules/common.smk refuses them afterwards: docs/refuses.md).
if not workflow.overwrite_configfiles:
    refuse_yte("config.yaml")

    configfile: "config.yaml"


# The conda envs install vislaw from this checkout (pip line -e ${VISLAW_ROOT}[extra]).
from vislaw.deploy import export_package_root

export_package_root(workflow.basedir)


include: "rules/common.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets,


include: "rules/data.smk"
include: "rules/prepare.smk"
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/scores.smk"
include: "rules/evaluate.smk"
include: "rules/embed.smk"
include: "rules/lmvr.smk"
include: "rules/law.smk"
include: "rules/policy_common.smk"
include: "rules/policy.smk"
include: "rules/report.smk"
include: "rules/warm.smk"


# Every rule is known now: a resources: key that names none of them is a typo. Rules that only
# some configs define (tiny_llm, synthetic_data ...) are read from the rule files, so one
# resources block can serve several configs.
check_rule_names(
    config,
    [rule.name for rule in workflow.rules]
    + rule_names_in(Path(workflow.basedir) / "rules"),
)

# vislaw: the Law of Vision Representation in MLLMs, as a DAG.
# Real use: snakemake --profile profiles/slurm (config.yaml); demo: make demo (config/demo.yaml).


# config.yaml is the default; a --configfile on the command line replaces it rather than being
# merged into it (a demo config must not inherit the paper's encoders).
if not workflow.overwrite_configfiles:

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
include: "rules/features.smk"
include: "rules/train.smk"
include: "rules/scores.smk"
include: "rules/evaluate.smk"
include: "rules/embed.smk"
include: "rules/lmvr.smk"
include: "rules/law.smk"
include: "rules/report.smk"

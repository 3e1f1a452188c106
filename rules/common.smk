# Config checking, run paths, per-encoder env/resources and input functions shared by all rules.
import os
import re
import sys
from pathlib import Path

from snakemake.utils import min_version

from vislaw.config import check_cli_config, check_config_files
from vislaw.encoders.registry import conda_env
from vislaw.host import check_device
from vislaw.layout import (
    LAW_FIGURE,
    LAW_FIGURES_DIR,
    LAW_REPORTED,
    STAGES,
    RunLayout,
    law_files,
)
from vislaw.layout import data_path as layout_data_path
from vislaw.pipeline import load_checked_config, step_settings
from vislaw.prepare import status as prepare_status
from vislaw.prepare.sources import sources as prepare_sources
from vislaw.train.recipes import stage1_trains_llm, trains_encoder

min_version("9.0")

# Snakemake parsed the config files already (keeping the last of duplicate keys): re-read them
# with our loader, which refuses duplicates and yte files, and check the --config overrides.
check_config_files(workflow.overwrite_configfiles or workflow.configfiles)
check_cli_config(sys.argv)
# The schema check, the zoo's checks (fusion members, token grids) and the semantic checks
# (vislaw.checks: grids, layers, timesteps, batches): fails before any job.
config, SPECS = load_checked_config(config)
# device: cuda where jobs run here and there is no CUDA device (a cluster's login node may have
# none while its GPU nodes do: checked there, by each job's vislaw.jobs.pick_device).
if workflow.local_exec:
    check_device(config)

# Every output path and file name of the run (vislaw/layout.py, shared with the library): the
# rules call its methods with Snakemake placeholders ("{encoder}") for wildcard patterns.
LAYOUT = RunLayout.from_config(config)


def write_checked_config():
    """The checked config, written once per run (when it starts, never in a dry run) to the one
    file every job's rank processes read (vislaw.ranks.run_config_file: named by its content,
    so an unchanged config touches nothing and no job writes its own copy)."""
    from vislaw.ranks import run_config_file

    run_config_file(config)


SYNTHETIC = "synthetic" in config["data"]

ENCODERS = list(SPECS)
BASE_ENCODERS = [n for n, s in SPECS.items() if s.family != "fusion"]
FUSIONS = [n for n, s in SPECS.items() if s.family == "fusion"]


def _alternation(names):
    """A regex matching exactly one of ``names`` (encoder names hold '+' and '.')."""
    return (
        "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)"
    )


BASE_RE = _alternation(BASE_ENCODERS)
FUSION_RE = _alternation(FUSIONS)
# Encoders whose recipe trains the encoder (ConvLLaVA): their stage folders hold more files
# (encoder.safetensors, stage 1's llm/ with train_llm), so rules stage1_encoder/stage2_encoder
# (rules/train.smk) declare them; the two sets never overlap, so one rule matches each job.
TRAINED_ENCODERS = [n for n in SPECS if trains_encoder(config, n)]
TRAINED_RE = _alternation(TRAINED_ENCODERS)
FROZEN_RE = _alternation([n for n in SPECS if n not in TRAINED_ENCODERS])
STAGE1_TRAINS_LLM = any(stage1_trains_llm(config, n) for n in TRAINED_ENCODERS)


wildcard_constraints:
    encoder=_alternation(ENCODERS),


def data_path(key):
    """A dataset path from config; relative paths resolve against data.root."""
    return str(layout_data_path(config, key))


def data_inputs(wildcards=None):
    """The demo generator's manifest when the data are synthetic; nothing for real data."""
    return [LAYOUT.data_manifest] if SYNTHETIC else []


def lmvr_image_folder(wildcards):
    """LMVR's labelled ImageFolder (rule lmvr_images writes it on synthetic data); the
    ConfigError names lmvr.image_folder when real data give none."""
    from vislaw.lmvr.settings import require_image_folder

    return [str(require_image_folder(config))]


def env_for_encoder(wildcards):
    """The conda env file of the stack that runs the job's encoder (a fusion: the stack all its
    members run in, vislaw.encoders.fusion); every rule that loads an encoder uses this one.
    """
    return f"../envs/{conda_env(SPECS[wildcards.encoder])}.yaml"


def trained_encoder_stage1(wildcards):
    """Stage 1's vlm.json when the encoder's recipe trains it (ConvLLaVA): its features
    (C score) come from the trained encoder the MLLM uses, not the spec's untrained one.
    """
    if trains_encoder(config, wildcards.encoder):
        return LAYOUT.stage_info("stage1", wildcards.encoder)
    return []


def trained_encoder_weights(wildcards):
    """Those features' other input: stage 1's encoder.safetensors (edited weights rerun them)."""
    if trains_encoder(config, wildcards.encoder):
        return LAYOUT.stage_encoder("stage1", wildcards.encoder)
    return []


def rule_settings(step):
    """`params: settings=rule_settings("<rule>")`: the settings the rule's job reads, as canonical
    JSON (vislaw.pipeline.step_settings, the one table of them). Snakemake records it with the
    outputs and reruns exactly the jobs whose settings changed (its params rerun trigger).
    """
    return lambda wc: step_settings(config, SPECS, step, dict(wc.items()))


def stage_files(stage):
    """Input function: the files of a trained stage folder its consumer loads besides vlm.json
    (the projector; stage 2's fine-tuned LLM; where the recipe trains the encoder, its
    encoder.safetensors and stage 1's llm/ with train_llm): a changed one reruns the consumer.
    """

    def inputs(wildcards):
        encoder = wildcards.encoder
        files = [LAYOUT.stage_projector(stage, encoder)]
        if trains_encoder(config, encoder):
            files.append(LAYOUT.stage_encoder(stage, encoder))
        if stage == "stage2" or (trains_encoder(config, encoder) and STAGE1_TRAINS_LLM):
            files.append(LAYOUT.stage_llm(encoder, stage))
        return files

    return inputs


def rule_resources(rule_name):
    """A rule's resources, derived in one place (vislaw/resources.py): config resources.<rule>
    over resources.default, GPUs for the rules that load a model on the GPU, time limits from
    the cost estimate (per encoder job, hence a function of the wildcards)."""
    from vislaw.resources import rule_resources as derive

    out = derive(config, rule_name)
    out["runtime"] = lambda wc: derive(config, rule_name, wc.get("encoder"))["runtime"]
    return out


STAGE_TARGETS = {
    "data": lambda: data_inputs(),
    "features": lambda: [LAYOUT.features(e) for e in ENCODERS],
    "stage1": lambda: [LAYOUT.stage_info("stage1", e) for e in ENCODERS],
    "stage2": lambda: [LAYOUT.stage_info("stage2", e) for e in ENCODERS],
    "c_score": lambda: [LAYOUT.c_scores_table],  # rules/scores.smk
    "law": lambda: [LAYOUT.law_file(name) for name in LAW_FILES],  # rules/law.smk
    "evaluate": lambda: [LAYOUT.benchmarks_table],
    "embeddings": lambda: [LAYOUT.a_loglik(e) for e in ENCODERS],
    "a_score": lambda: [LAYOUT.a_scores_table],  # rules/embed.smk
    "lmvr": lambda: [LAYOUT.lmvr_probe]  # rules/lmvr.smk
    + [LAYOUT.lmvr_maps(e) for e in LMVR_ENCODERS],
    "report": lambda: [LAYOUT.training_curves],  # rules/report.smk
}


def all_targets(wildcards):
    """Outputs of the stages listed under `targets` in the config."""
    missing = [t for t in config["targets"] if t not in STAGE_TARGETS]
    if missing:
        raise ValueError(
            f"config key 'targets': stages not available in this workflow: {missing}"
        )
    return [path for t in config["targets"] for path in STAGE_TARGETS[t]()]


def law_output(name):
    """A law output path, marked for the HTML report when it is a figure or a main table;
    the figures (law.png and each benchmark's PNG, figures/<benchmark>.png) get their own
    caption, which says what the units, the fit statement and the edge markers mean."""
    figure = name.startswith(f"{LAW_FIGURES_DIR}/")
    path = LAYOUT.law_figure(name.split("/", 1)[1]) if figure else LAYOUT.law_file(name)
    if name == LAW_FIGURE or (figure and name.endswith(".png")):
        return report(
            path,
            caption="../report/law_figures.rst",
            category="Law",
            subcategory="Figures",
        )
    if name in LAW_REPORTED:
        return report(path, caption="../report/law.rst", category="Law")
    return path


def a_score_references(wildcards):
    """No files: checks, when the A-score table is planned, that the configured reference
    encoders exist (a config that never asks for A scores may leave them out)."""
    from vislaw.config import ConfigError

    for suffix, ref in config["a_score"]["references"].items():
        if ref not in SPECS:
            raise ConfigError(
                f"a_score.references.{suffix}", f"'{ref}' is not an encoder"
            )
    return []


def refuse_unprepared():
    """Print every real input of the config that is not prepared, and the command that
    prepares them, then stop: nothing is planned (SystemExit, so no traceback)."""
    gone = prepare_status.missing(prepare_status.all_requirements(config, SPECS))
    configfiles = [
        os.path.relpath(f) if not os.path.relpath(f).startswith("..") else str(f)
        for f in (workflow.overwrite_configfiles or ["config.yaml"])
    ]
    print(prepare_status.missing_message(gone, configfiles), file=sys.stderr)
    raise SystemExit(1)


def prepared(dataset=False, encoder=False, llm=False, benchmarks=False, name=None):
    """Input function: the markers of the real data (`dataset`: the job's {dataset} wildcard,
    or `name`) and Hub repos (the job's {encoder}, the LLM, the benchmarks' datasets) a job
    reads. A missing one stops the whole run before any job (refuse_unprepared); present ones
    are inputs marked ancient (a re-prepared source does not rerun finished jobs)."""

    def inputs(wildcards):
        reqs = []
        if dataset or name:
            reqs += prepare_status.data_requirements(config, name or wildcards.dataset)
        reqs += prepare_status.model_requirements(
            config,
            SPECS,
            encoder=wildcards.encoder if encoder else None,
            llm=llm,
            benchmarks=benchmarks,
        )
        if prepare_status.missing(reqs):
            refuse_unprepared()
        return [ancient(str(r.marker)) for r in reqs]

    return inputs


def data_checked(dataset):
    """check_data's report of a dataset the config has (training and scoring start after it)."""
    return [LAYOUT.data_check(dataset)] if dataset in config["data"] else []

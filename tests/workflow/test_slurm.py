"""The DAG on a real SLURM cluster, not a dry run (issue 9).

Profile checks run everywhere. The integration test needs the single-node cluster of
ci/slurm-up.sh (CI starts it as root) and skips with the reason otherwise: it runs
config/slurm_test.yaml (data -> features -> C score for two tiny encoders) through
`snakemake --profile profiles/slurm-local`, checks the outputs, and asks `sacct` whether every
planned job ran as a SLURM job, completed, and got the CPUs, memory and time limit its rule asked
for in the config's `resources:` section.
"""

from __future__ import annotations

import csv
import getpass
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from helpers.paths import ROOT
from helpers.run import mark_prepared
from helpers.run import run_snakemake as _snakemake

pytestmark = pytest.mark.slow  # the DAG on the SLURM test cluster and SLURM dry runs

BIN = Path(sys.executable).parent
CONFIG = ROOT / "config" / "slurm_test.yaml"
PROFILES = ROOT / "profiles"
UP_SCRIPT = ROOT / "ci" / "slurm-up.sh"
# Comment (the rule and wildcards) last: it is the only free-text field.
SACCT_FIELDS = [
    "JobIDRaw",
    "State",
    "Account",
    "Partition",
    "AllocCPUS",
    "ReqMem",
    "Timelimit",
    "AllocTRES",
    "Comment",
]
# rule_resources() in rules/common.smk falls back to these when the config names nothing.
RESOURCE_FALLBACK = {"cpus": 1, "mem_mb": 4000, "runtime": 60}


def _script_constant(name: str) -> str:
    """A NAME=value line of ci/slurm-up.sh: the test and the profile must match the cluster."""
    match = re.search(rf"^{name}=(\S+)$", UP_SCRIPT.read_text(), re.MULTILINE)
    assert match, f"{UP_SCRIPT} defines no {name}="
    return match.group(1)


ACCOUNT = _script_constant("ACCOUNT")
PARTITION = _script_constant("PARTITION")
GPU_MODEL = _script_constant("GPU_MODEL")
# The real run asks for the node's 2 gres GPUs in this rule (the jobs still compute on the CPU,
# one process per GPU, each encoding its share of the images: vislaw.features).
GPU_RULE = "features"
GPU_REQUEST = 2


def _load_profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


# --- the profiles (no cluster needed) --------------------------------------------------------


def test_local_cluster_profile_matches_the_cluster_script():
    local = _load_profile("slurm-local")
    assert local["executor"] == "slurm"
    assert local["default-resources"]["slurm_account"] == ACCOUNT
    assert local["default-resources"]["slurm_partition"] == PARTITION
    assert "software-deployment-method" not in local  # the nodes here have no conda
    assert local["slurm-init-seconds-before-status-checks"] <= 5


def test_real_cluster_profile_deploys_conda_on_shared_storage():
    real = _load_profile("slurm")
    assert real["executor"] == "slurm"
    assert real["software-deployment-method"] == "conda"
    assert real["conda-prefix"] == "$VISLAW_CONDA_PREFIX"
    assert real["default-resources"]["slurm_account"] == "$VISLAW_SLURM_ACCOUNT"
    # GPU needs are derived per rule (vislaw/resources.py), not listed again in the profile.
    assert "set-resources" not in real
    assert real["slurm-requeue"] is True


def _dry_run_resources(tmp_path: Path, *args: str) -> dict[str, list[dict[str, str]]]:
    """The resources a dry run gives each planned job, by rule: every profile key parsed and
    every resource evaluated, as the real submission would."""
    path = _test_config(tmp_path, node_cpus=2)
    result = _snakemake(
        "-n", *args, "--configfile", str(path), "--directory", str(tmp_path), timeout=900
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    jobs: dict[str, list[dict[str, str]]] = {}
    for rule, resources in re.findall(
        r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.MULTILINE
    ):
        jobs.setdefault(rule, []).append(dict(kv.split("=", 1) for kv in resources.split(", ")))
    assert "features" in jobs, out[-4000:]
    return jobs


def _slurm_env(monkeypatch, tmp_path: Path) -> None:
    for var, value in {"ACCOUNT": "lab", "PARTITION": "cpu", "GPU_PARTITION": "gpu"}.items():
        monkeypatch.setenv(f"VISLAW_SLURM_{var}", value)
    monkeypatch.setenv("VISLAW_GPU_MODEL", "a100")
    monkeypatch.setenv("VISLAW_CONDA_PREFIX", str(tmp_path / "conda"))


def test_real_cluster_profile_keeps_a_cpu_config_off_the_gpu_partition(tmp_path, monkeypatch):
    _slurm_env(monkeypatch, tmp_path)
    # CI has no conda binary: swap the deployment method for one no rule uses.
    jobs = _dry_run_resources(tmp_path, "--profile", "profiles/slurm", "--sdm", "env-modules")
    for rule, planned in jobs.items():
        for resources in planned:
            assert resources["slurm_account"] == "lab", rule
            # device: cpu and no explicit gpus: nothing asks for a GPU
            assert resources["slurm_partition"] == "cpu", rule
            assert "gpu" not in resources and "gpu_model" not in resources, rule


# --- the paper's config on a real cluster, planned (no cluster needed) -------------------------
PAPER_CONFIG = ROOT / "config.yaml"
# Least memory (MB) a job needs at the paper's size: encoders up to SD3 / SDXL in fp32, a bf16
# 7B MLLM staged through host memory (~14 GB) per process, DeepSpeed's host-side buffers.
MIN_MEM_MB = {
    "features": 24000,
    "stage1": 128000,
    "stage2": 256000,
    "embeddings": 32000,
    "evaluate": 32000,  # per GPU (one lmms-eval process each)
    "lmvr": 32000,
}


def _placeholder_data(workdir: Path, config: dict) -> None:
    """Empty stand-ins for the prepared data under the configured paths, so that the paper's
    config plans as it would once the data are in place (nothing is read in a dry run)."""
    root = workdir / config["data"]["root"]
    for value in config["data"].values():
        if not isinstance(value, dict):
            continue
        for item, path in value.items():
            if not isinstance(path, str) or item not in {"json", "image_folder", "root"}:
                continue
            target = root / path
            if target.suffix == ".json":
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("[]")
            else:
                target.mkdir(parents=True, exist_ok=True)
    folder = config.get("lmvr", {}).get("image_folder")
    if folder:
        (root / folder / "placeholder_class").mkdir(parents=True, exist_ok=True)
    # and `prepare`'s markers (data sources, Hub repos), without which a run refuses to plan
    mark_prepared(PAPER_CONFIG, workdir)


def _planned_jobs_with_wildcards(out: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    """(rule, wildcards, resources) of every job a dry run prints."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:\n)", out):
        head = re.match(r"(?:local)?rule (\w+):\n", block)
        resources = re.search(r"^    resources: (.*)$", block, re.MULTILINE)
        if not head or not resources:
            continue
        wildcards = re.search(r"^    wildcards: (.*)$", block, re.MULTILINE)
        parse = lambda text: dict(kv.split("=", 1) for kv in text.split(", "))  # noqa: E731
        jobs.append(
            (
                head.group(1),
                parse(wildcards.group(1)) if wildcards else {},
                parse(resources.group(1)),
            )
        )
    return jobs


def test_slurm_resources_of_the_paper_config(tmp_path, monkeypatch):
    """config.yaml through profiles/slurm: every job's partition, GPUs, memory and time."""
    from vislaw.config import load_config
    from vislaw.cost import cost_lines, job_hours
    from vislaw.gpu_rules import GPU_RULES, step_of

    _slurm_env(monkeypatch, tmp_path)
    config = yaml.safe_load(PAPER_CONFIG.read_text())
    _placeholder_data(tmp_path, config)
    result = _snakemake(
        "-n",
        "--profile",
        "profiles/slurm",
        "--sdm",
        "env-modules",
        "--configfile",
        str(PAPER_CONFIG),
        "--directory",
        str(tmp_path),
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    # ConvLLaVA's stage jobs are rules stage1_encoder/stage2_encoder: the same steps
    jobs = [(step_of(rule), w, r) for rule, w, r in _planned_jobs_with_wildcards(out)]
    checked = load_config(PAPER_CONFIG)
    seen: Counter = Counter()
    for rule, wildcards, res in jobs:
        seen[rule] += 1
        assert res["slurm_account"] == "lab", rule
        if rule not in GPU_RULES:
            assert res["slurm_partition"] == "cpu" and "gpu" not in res, (rule, res)
            continue
        gpus = int(res["gpu"])
        assert res["slurm_partition"] == "gpu" and res["gpu_model"] == "a100", (rule, res)
        assert gpus >= 1, (rule, res)
        per_process = int(res["mem_mb"]) / (gpus if rule == "evaluate" else 1)
        assert per_process >= MIN_MEM_MB[rule], (rule, res)
        # The time limit covers the estimated cost of this very job, with room to spare.
        hours = job_hours(checked, rule, gpus, wildcards.get("encoder"))
        assert hours * 60 * 1.2 <= int(res["runtime"]) <= 7 * 24 * 60, (rule, wildcards, res)
    # every GPU stage of the paper is planned, and the cost table counts the same jobs
    assert set(seen) >= GPU_RULES, seen
    table = {line.rule: line for line in cost_lines(checked)}
    assert {rule: table[rule].jobs for rule in GPU_RULES} == {r: seen[r] for r in GPU_RULES}
    # training uses a node's 8 GPUs; ConvLLaVA's longer stage 1 gets a longer limit
    stage1 = {w["encoder"]: int(r["runtime"]) for rule, w, r in jobs if rule == "stage1"}
    assert stage1["convllava_768"] > stage1["clip224"]


@pytest.mark.parametrize("profile", ["slurm-local", "local"])
def test_local_profiles_plan_the_test_config(profile, tmp_path):
    jobs = _dry_run_resources(tmp_path, "--profile", f"profiles/{profile}")
    config = yaml.safe_load(CONFIG.read_text())
    for rule, planned in jobs.items():
        for resources in planned:
            if rule != "all":
                assert int(resources["mem_mb"]) == rule_resources(config, rule)["mem_mb"], rule
            assert "gpu" not in resources and "gpu_model" not in resources, rule
            if profile == "slurm-local":
                assert resources["slurm_account"] == ACCOUNT, rule
                assert resources["slurm_partition"] == PARTITION, rule


# --- the real cluster ------------------------------------------------------------------------


def cluster_unavailable() -> str | None:
    """Why the integration test cannot run here, or None when the test cluster is up."""
    hint = "CI brings it up with ci/slurm-up.sh (as root)"
    if shutil.which("sinfo") is None:
        return f"no SLURM here: 'sinfo' not found; {hint}"
    try:
        result = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%T"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return f"SLURM controller does not answer (sinfo timed out); {hint}"
    states = result.stdout.split()
    if result.returncode != 0 or not states:
        detail = result.stderr.strip()[:200] or "sinfo lists no node in it"
        return f"no SLURM partition '{PARTITION}' ({detail}); {hint}"
    if not {"idle", "mixed"} & set(states):
        return f"partition '{PARTITION}' has no idle node (states: {states}); {hint}"
    user = getpass.getuser()
    query = ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}"]
    assoc = subprocess.run(
        [*query, f"account={ACCOUNT}", "format=user"], capture_output=True, text=True, timeout=30
    )
    if not assoc.stdout.strip():
        return f"user {user} is not in SLURM account '{ACCOUNT}' (sudo ci/slurm-up.sh adds you)"
    return None


def _node_cpus() -> int:
    out = subprocess.run(
        ["sinfo", "-h", "-p", PARTITION, "-o", "%c"], capture_output=True, text=True, timeout=30
    ).stdout
    return min(int(value) for value in out.split())


def _test_config(tmp_path: Path, node_cpus: int, gpus: int = 0) -> Path:
    """config/slurm_test.yaml with its results (and generated data) inside tmp_path, and no
    rule asking for more CPUs than the node has; with ``gpus``, GPU_RULE asks for that many of
    the cluster's fake gres GPUs."""
    config = yaml.safe_load(CONFIG.read_text())
    if gpus:
        config["resources"][GPU_RULE] = {
            **config["resources"].get(GPU_RULE, {}),
            "gpus": gpus,
            "gpu_model": GPU_MODEL,
        }
    config["results_dir"] = str(tmp_path / "results")
    config["data"]["root"] = str(tmp_path / "results" / config["run"] / "data")
    for resources in config["resources"].values():
        if "cpus" in resources:
            resources["cpus"] = min(resources["cpus"], node_cpus)
    path = tmp_path / "slurm_test.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rule_resources(config: dict, rule: str) -> dict[str, int]:
    """What a rule asks SLURM for: resources.<rule> over resources.default (as common.smk)."""
    table = config.get("resources", {})
    return {**RESOURCE_FALLBACK, **table.get("default", {}), **table.get(rule, {})}


def _planned_jobs(log: str) -> Counter:
    """The 'Job stats' table Snakemake prints before it starts: jobs per rule."""
    counts: Counter = Counter()
    block = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    for line in block.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


def _mem_mb(value: str) -> float:
    """sacct ReqMem ('3000M', '2G', older '3000Mn' per node / 'Mc' per CPU) in MB."""
    match = re.fullmatch(r"([\d.]+)([KMGT])[nc]?", value)
    assert match, f"unexpected ReqMem {value!r}"
    return float(match.group(1)) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[match.group(2)]


def _minutes(value: str) -> int:
    """sacct Timelimit ('[D-]HH:MM:SS') in minutes."""
    days, _, clock = value.rpartition("-")
    hours, minutes, seconds = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + hours * 60 + minutes + (seconds > 0)


def _sacct(run_id: str, expected: int) -> list[dict[str, str]]:
    """This run's jobs. The job comment (rule and wildcards) reaches the database when the job
    ends, shortly after Snakemake sees it complete, hence the few retries."""
    rows: list[dict[str, str]] = []
    for _ in range(20):
        out = subprocess.run(
            [
                "sacct",
                "-X",
                "-P",
                "-n",
                "-S",
                "now-6hours",
                "--name",
                run_id,
                f"--format={','.join(SACCT_FIELDS)}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        rows = [
            dict(zip(SACCT_FIELDS, line.split("|", len(SACCT_FIELDS) - 1), strict=True))
            for line in out.splitlines()
            if line
        ]
        if len(rows) >= expected and all(row["Comment"] for row in rows):
            break
        time.sleep(0.5)
    return rows


def _rule_of(comment: str) -> tuple[str, str]:
    """(rule, wildcards) from the executor's job comment 'rule_<rule>[_wildcards_<values>]'."""
    match = re.fullmatch(r"rule_(.+?)(?:_wildcards_(.*))?", comment)
    assert match, f"unexpected SLURM job comment {comment!r}"
    return match.group(1), match.group(2) or ""


@dataclass
class SlurmRun:
    result: subprocess.CompletedProcess
    config: dict
    config_path: Path
    workdir: Path
    run_dir: Path
    wall_s: float
    planned: Counter
    jobs: list[dict[str, str]]


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> SlurmRun:
    reason = cluster_unavailable()
    if reason:
        pytest.skip(reason)
    tmp_path = tmp_path_factory.mktemp("slurm")
    path = _test_config(tmp_path, _node_cpus(), gpus=GPU_REQUEST)
    config = yaml.safe_load(path.read_text())
    start = time.monotonic()
    result = _snakemake(
        "--profile",
        "profiles/slurm-local",
        "--configfile",
        str(path),
        "--directory",
        str(tmp_path),
        timeout=900,
    )
    wall_s = time.monotonic() - start
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    run_id = re.search(r"SLURM run ID: (\S+)", log)
    assert run_id, "the SLURM executor did not report a run ID:\n" + log[-3000:]
    planned = _planned_jobs(log)
    planned.pop("all", None)  # the target rule runs no job
    return SlurmRun(
        result=result,
        config=config,
        config_path=path,
        workdir=tmp_path,
        run_dir=Path(config["results_dir"]) / config["run"],
        wall_s=wall_s,
        planned=planned,
        jobs=_sacct(run_id.group(1), sum(planned.values())),
    )


def test_dag_runs_on_slurm_and_writes_every_output(slurm_run, capsys):
    with capsys.disabled():
        print(
            f"\n[slurm] {sum(slurm_run.planned.values())} SLURM jobs "
            f"({dict(slurm_run.planned)}) in {slurm_run.wall_s:.0f} s wall"
        )
    from vislaw.encoders.registry import token_grid
    from vislaw.io.hdf5 import read_features
    from vislaw.pipeline import load_checked_config

    _, specs = load_checked_config(slurm_run.config)
    assert len(specs) >= 2
    for name, spec in specs.items():
        feats = read_features(slurm_run.run_dir / "features" / f"{name}.h5")
        rows, cols = token_grid(spec)
        assert feats.features.shape[1] == rows * cols, name
        assert len(feats.ids) == feats.features.shape[0] > 0, name
    with open(slurm_run.run_dir / "scores" / "c_scores.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert sorted(row["encoder"] for row in table) == sorted(specs)
    for row in table:
        assert 0.0 <= float(row["pck10_image"]) <= 100.0, row
        assert int(row["n_pairs"]) > 0, row
    # Every target is there and up to date: a second pass has nothing left to do.
    again = _snakemake(
        "-n",
        "--profile",
        "profiles/slurm-local",
        "--configfile",
        str(slurm_run.config_path),
        "--directory",
        str(slurm_run.workdir),
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


def test_every_planned_job_completed_as_a_slurm_job(slurm_run):
    assert {"synthetic_data", "features"} <= set(slurm_run.planned)
    ran = Counter(_rule_of(job["Comment"])[0] for job in slurm_run.jobs)
    assert ran == slurm_run.planned
    for job in slurm_run.jobs:
        assert job["State"] == "COMPLETED", job
        assert (job["Account"], job["Partition"]) == (ACCOUNT, PARTITION), job
    wildcards = {_rule_of(job["Comment"])[1] for job in slurm_run.jobs}
    assert set(slurm_run.config["encoders"]) <= wildcards  # one features job per encoder


def test_slurm_jobs_got_the_resources_their_rule_asked_for(slurm_run):
    asked_for = set()
    for job in slurm_run.jobs:
        rule, _ = _rule_of(job["Comment"])
        want = rule_resources(slurm_run.config, rule)
        got = {
            "cpus": int(job["AllocCPUS"]),
            "mem_mb": _mem_mb(job["ReqMem"]),
            "runtime": _minutes(job["Timelimit"]),
        }
        assert got == {k: want[k] for k in got}, (rule, job)
        asked_for.add(tuple(sorted(got.items())))
    assert len(asked_for) >= 2  # the test config gives rules different resources


def _tres(value: str) -> dict[str, str]:
    """sacct AllocTRES 'cpu=1,gres/gpu=1,...' as a dict."""
    return dict(item.split("=", 1) for item in value.split(",") if "=" in item)


def test_gpu_rule_was_submitted_with_its_gres_gpus(slurm_run):
    """The GPU rule's jobs got the node's (fake) GPUs as SLURM allocated them; no other job
    holds one. The executor plugin turned resources gpu + gpu_model into --gpus=<model>:<n>."""
    gpu_jobs = 0
    for job in slurm_run.jobs:
        rule, _ = _rule_of(job["Comment"])
        tres = _tres(job["AllocTRES"])
        if rule == GPU_RULE:
            gpu_jobs += 1
            assert tres.get("gres/gpu") == str(GPU_REQUEST), job
            assert tres.get(f"gres/gpu:{GPU_MODEL}") == str(GPU_REQUEST), job
        else:
            assert "gres/gpu" not in tres, job
    assert gpu_jobs == len(slurm_run.config["encoders"])
    # each features job ran one process per GPU, merged into one file
    from vislaw.io.hdf5 import read_features

    for name in slurm_run.config["encoders"]:
        meta = read_features(slurm_run.run_dir / "features" / f"{name}.h5").meta
        assert meta.get("ranks") == GPU_REQUEST, (name, meta)

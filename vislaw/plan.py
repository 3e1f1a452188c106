"""``make plan`` / ``python -m vislaw.plan``: the whole SLURM plan of a config before any download.

A user should see every job, its GPUs, memory, time limit and partition, what the run costs
and what is still to download, before fetching ~140 GB or paying for GPU time. A real run
refuses to plan until ``prepare`` has run (vislaw.prepare.status: the markers are inputs), and
the SLURM profile deploys conda envs, which needs a ``conda`` binary even for a dry run. So the
plan is a Snakemake dry run of the real Snakefile and profile in a throw-away folder: the
config's data and Hub cache are pointed there and filled with empty placeholders and
``prepare``'s markers, and the deployment method is swapped for one no rule uses
(``--sdm env-modules``). Nothing is written outside that folder, and the real run is untouched:
it still refuses until the inputs are prepared.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from vislaw.io.atomic import write_text_atomic

# profiles/slurm reads these; unset ones get a visible stand-in in the plan.
SLURM_ENV = (
    "VISLAW_SLURM_ACCOUNT",
    "VISLAW_SLURM_PARTITION",
    "VISLAW_SLURM_GPU_PARTITION",
    "VISLAW_GPU_MODEL",
)
DATA_KEYS = {"json", "image_folder", "root"}


def plan_config(config: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The config with its data root, Hub cache and results moved into ``folder`` (relative
    paths: the dry run's --directory), so placeholders never land on the real paths."""
    out = dict(config)
    out["data"] = {**config["data"], "root": "data"}
    out["results_dir"] = "results"
    if (config.get("cache") or {}).get("hf_home"):
        out["cache"] = {**config["cache"], "hf_home": "data/hf_home"}
    write_text_atomic(folder / "plan-config.yaml", yaml.safe_dump(out, sort_keys=False))
    return out


def _inside(folder: Path, path: str | Path) -> Path | None:
    """``folder / path`` when it stays inside ``folder`` (None for an absolute path or one
    with ``..`` that leaves it): the plan never writes on a user's real data."""
    target = (folder / path).resolve()
    return target if target.is_relative_to(folder.resolve()) else None


def write_placeholders(config_path: Path, folder: Path) -> None:
    """Empty stand-ins for the data the config reads (JSONs ``[]``, folders, an LMVR class
    folder) and ``prepare``'s markers, only under ``folder`` and never over a file."""
    from vislaw.pipeline import load_checked_config

    config, specs = load_checked_config(config_path)
    paths = [
        path
        for value in config["data"].values()
        for key, path in (value.items() if isinstance(value, Mapping) else [])
        if key in DATA_KEYS and isinstance(path, str)
    ]
    lmvr_folder = (config.get("lmvr") or {}).get("image_folder")
    if lmvr_folder:
        paths.append(f"{lmvr_folder}/placeholder_class")
    for path in paths:
        target = _inside(folder, Path("data") / path)
        if target is None or target.exists():
            continue
        if target.suffix == ".json":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("[]")
        else:
            target.mkdir(parents=True, exist_ok=True)
    write_markers(config, specs, folder)


def write_markers(config: Mapping[str, Any], specs: Mapping[str, Any], folder: Path) -> None:
    """``prepare``'s markers of every source and Hub repo of the config, under ``folder``
    (a marker outside it is left alone)."""
    from vislaw.prepare.sources import sources, write_stand_in
    from vislaw.prepare.status import all_requirements

    data_markers = set()
    for source in sources(config).values():  # a data marker counts only when it verifies
        data_markers.add(source.marker)
        marker = _inside(folder, source.marker)
        if marker is not None and _inside(folder, source.dest) and not marker.exists():
            write_stand_in(source, folder)  # relative paths resolve in the plan's folder
    for req in all_requirements(config, specs):
        marker = _inside(folder, req.marker)
        if req.marker not in data_markers and marker is not None and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text("{}")


def dry_run(folder: Path, profile: str, targets: Sequence[str] | None) -> str:
    """Snakemake's dry run of the plan config in ``folder`` with the Snakefile and profile of
    the working directory (the checkout); its output (RuntimeError with its tail on failure)."""
    exe = shutil.which("snakemake", path=f"{Path(sys.executable).parent}{os.pathsep}")
    command = [exe or "snakemake", "-n", "--profile", str(Path(profile).resolve())]
    command += ["--sdm", "env-modules", "--snakefile", str(Path("Snakefile").resolve())]
    command += ["--directory", str(folder)]
    command += ["--configfile", str(folder / "plan-config.yaml")]
    if targets:
        command += ["--config", f"targets=[{','.join(targets)}]"]
    env = {name: os.environ.get(name) or f"${name}" for name in SLURM_ENV}
    env["VISLAW_CONDA_PREFIX"] = str(folder / "conda")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    out = result.stdout + result.stderr
    if result.returncode != 0:
        raise RuntimeError(f"the dry run failed:\n{out[-4000:]}")
    return out


def planned_jobs(out: str) -> list[dict[str, str]]:
    """Every job of a dry run's output: rule, wildcards and its resources."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \S+:\n)", out):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\S+):\n", block)
        if not head:
            continue
        found = {
            key: re.search(rf"^    {key}: (.*)$", block, re.MULTILINE)
            for key in ("wildcards", "resources")
        }
        fields = {"rule": head.group(1), "wildcards": ""}
        if found["wildcards"]:
            fields["wildcards"] = found["wildcards"].group(1)
        if found["resources"]:
            fields |= dict(kv.split("=", 1) for kv in found["resources"].group(1).split(", "))
        jobs.append(fields)
    return jobs


def jobs_table(jobs: Sequence[Mapping[str, str]]) -> str:
    """One Markdown row per job: GPUs (gpu=, or gres= for multi-node), memory, time, partition."""
    rows = [
        "| rule | wildcards | nodes | GPUs | CPUs | mem (GB) | time (h) | partition |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for job in jobs:
        gpus = job.get("gpu") or (job.get("gres", "").rsplit(":", 1)[-1] if "gres" in job else "0")
        mem = f"{int(job['mem_mb']) / 1000:g}" if job.get("mem_mb", "").isdigit() else "-"
        time = f"{int(job['runtime']) / 60:.1f}" if job.get("runtime", "").isdigit() else "-"
        rows.append(
            f"| {job['rule']} | {job['wildcards']} | {job.get('nodes', '1')} | {gpus} | "
            f"{job.get('cpus_per_task', '-')} | {mem} | {time} | "
            f"{job.get('slurm_partition', '-')} |"
        )
    return "\n".join(rows)


def plan(config_path: str, profile: str, targets: Sequence[str] | None) -> str:
    """The plan's text: jobs, cost table and missing inputs with the prepare command."""
    from vislaw.config import load_config
    from vislaw.cost import cost_lines, format_table
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare import status

    config = load_config(config_path)
    config_real, specs = load_checked_config(config_path)
    gone = status.missing(status.all_requirements(config_real, specs))
    with tempfile.TemporaryDirectory(prefix="vislaw-plan-") as tmp:
        folder = Path(tmp)
        plan_config(config, folder)
        write_placeholders(folder / "plan-config.yaml", folder)
        jobs = planned_jobs(dry_run(folder, profile, targets))
    work = sorted(
        (j for j in jobs if j["rule"] != "all"), key=lambda j: (j["rule"], j["wildcards"])
    )
    unset = [name for name in SLURM_ENV if not os.environ.get(name)]
    lines = [f"# Plan of {config_path} on {profile}: {len(work)} jobs", "", jobs_table(work)]
    if unset:
        lines += ["", f"(not set, shown as $NAME: {' '.join(unset)}; see docs/slurm.md)"]
    lines += ["", "# Cost", "", format_table(cost_lines(config, targets)), ""]
    if gone:
        lines.append(status.missing_message(gone, [config_path]))
    else:
        lines.append("Every input is prepared: run it with snakemake --profile " + profile)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: print the plan (exit 0 even when inputs are missing: planning is the point)."""
    parser = argparse.ArgumentParser(
        prog="python -m vislaw.plan",
        description="Every SLURM job, the cost and the missing inputs, before any download.",
    )
    parser.add_argument("--config", default="config.yaml", help="default: %(default)s")
    parser.add_argument("--profile", default="profiles/slurm", help="default: %(default)s")
    parser.add_argument("--targets", nargs="+", help="stages (default: the config's targets)")
    args = parser.parse_args(argv)
    try:
        print(plan(args.config, args.profile, args.targets))
    except RuntimeError as err:
        print(f"vislaw plan: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rule `prepare_models`: every Hub repo the config loads into cache.hf_home (markers)."""

import os
from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.pipeline import load_checked_config
    from vislaw.prepare.hub import hub_repos, prepare_repo
    from vislaw.prepare.sources import hf_home

    config, specs = load_checked_config(snakemake.config)
    home = hf_home(config)
    repos = hub_repos(config, specs).values() if home is not None else []
    if home is None:
        print("cache.hf_home is not set: models load from your own Hub cache; nothing to do")
    for repo in repos:  # one after the other: the link, not the CPU, is the limit
        print(f"prepared: {prepare_repo(home, repo, token=os.environ.get('HF_TOKEN'))}")
    Path(snakemake.output[0]).touch()

"""Rule `eval_tasks`: lmms-eval task folders (YAML + questions) from the local benchmark sets."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.eval.local_tasks import run_eval_tasks

    outputs = [Path(p) for p in snakemake.output]  # <tasks>/<name>/<name>.yaml
    tasks_dir = outputs[0].parents[1]
    sets = {p.stem: Path(snakemake.params.sets_root) / p.stem for p in outputs}
    written = run_eval_tasks(sets, tasks_dir)
    assert written == outputs, (written, outputs)

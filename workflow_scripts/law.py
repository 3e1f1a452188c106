"""Rule `law`: fit the AC law on the scores table, simulate the AC policy, write law/."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.law.report import LawSettings, write_law_outputs
    from vislaw.law.tables import read_scores_table, restrict_to_config

    config = check_config(snakemake.config)
    law = config["law"]
    fmt = law["table_format"] if law["scores_table"] else "tidy"
    wanted = config["benchmarks"] or None
    if wanted and not law["scores_table"]:
        # this run's own scores: law_input left out benchmarks that were not scored (NaN with
        # a reason in benchmarks.csv, e.g. a GPT judge without a key); fit the others
        from vislaw.law.tables import read_tidy_table

        present = set(read_tidy_table(snakemake.input.scores)["benchmark"])
        for name in (b for b in wanted if b not in present):
            print(f"benchmark {name}: not scored for any encoder (see benchmarks.csv); left out")
        wanted = [b for b in wanted if b in present] or wanted
    table = read_scores_table(snakemake.input.scores, fmt, wanted)
    table = restrict_to_config(table, config["encoders"], source=snakemake.input.scores)
    settings = LawSettings.from_config(config, source=f"{snakemake.input.scores} ({fmt})")
    write_law_outputs(table, Path(snakemake.output[0]).parent, settings)

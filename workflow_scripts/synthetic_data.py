"""Rule `synthetic_data`: write the seeded demo datasets into data.root (manifest last).

No torch here, so no apply_runtime_settings: the generator only draws with PIL and numpy.
"""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.settings import DataSettings
    from vislaw.data.synthetic import run_synthetic_data

    config = check_config(snakemake.config)
    data = DataSettings.from_config(config)
    run_synthetic_data(data, config["seed"], manifest=snakemake.output.manifest)

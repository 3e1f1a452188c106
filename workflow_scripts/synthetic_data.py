"""Rule `synthetic_data`: write the seeded demo datasets into data.root (manifest last).

No torch here, so no apply_runtime_settings: the generator only draws with PIL and numpy.
"""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.synthetic import generate_from_config
    from vislaw.layout import RunLayout

    config = check_config(snakemake.config)
    expected = Path(RunLayout.from_config(config).data_manifest)
    manifest_path = Path(snakemake.output.manifest)
    if manifest_path.resolve() != expected.resolve():
        raise ValueError(f"rule output {manifest_path} is not the generator's manifest {expected}")
    generate_from_config(config)
    if not manifest_path.is_file():
        raise FileNotFoundError(f"the generator finished but {manifest_path} is missing")

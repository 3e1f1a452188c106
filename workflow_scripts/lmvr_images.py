"""Rule `lmvr_images`: the demo's labelled shape-class ImageFolder (PIL and numpy only)."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.lmvr.settings import SyntheticImages
    from vislaw.lmvr.steps import run_lmvr_images

    config = check_config(snakemake.config)
    run_lmvr_images(SyntheticImages.from_config(config), config["seed"], snakemake.output[0])

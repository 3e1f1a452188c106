"""Rule `lmvr_images`: the demo's labelled shape-class ImageFolder (PIL and numpy only)."""

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.data.imagefolder import write_shape_folder
    from vislaw.lmvr.settings import SyntheticImages

    config = check_config(snakemake.config)
    spec = SyntheticImages.from_config(config)
    items = write_shape_folder(
        snakemake.output[0], spec.classes, spec.per_class, spec.image_size, config["seed"]
    )
    print(f"wrote {len(items)} images in {len(spec.classes)} classes to {snakemake.output[0]}")

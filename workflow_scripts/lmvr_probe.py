"""Rule `lmvr_probe`: linear probes on every encoder's LMVR and baseline features."""

from pathlib import Path

from vislaw.jobs import job_log

snakemake = globals()["snakemake"]  # injected by Snakemake's script directive

with job_log(snakemake.log[0]):
    from vislaw.config import check_config
    from vislaw.layout import LMVR_FEATURES
    from vislaw.lmvr.probe import encoder_rows, write_probe_csv
    from vislaw.lmvr.settings import lmvr_settings

    settings = lmvr_settings(check_config(snakemake.config))
    rows = []
    for encoder in settings.encoders:
        rows += encoder_rows(
            encoder,
            Path(snakemake.params.root) / LMVR_FEATURES / encoder,
            settings.conditions,
            settings.condition_names,
            settings.probe,
        )
    write_probe_csv(rows, snakemake.output[0])
    print(f"wrote {len(rows)} rows to {snakemake.output[0]}")

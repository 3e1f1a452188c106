# Demo data: a seeded generator writing the real formats the later stages read.
if SYNTHETIC:

    rule synthetic_data:
        output:
            manifest=LAYOUT.data_manifest,
        log:
            LAYOUT.log("synthetic_data"),
        benchmark:
            LAYOUT.benchmark("synthetic_data")
        conda:
            "../envs/analysis.yaml"
        resources:
            **rule_resources("synthetic_data"),
        params:
            settings=rule_settings("synthetic_data"),
        script:
            "../workflow_scripts/synthetic_data.py"

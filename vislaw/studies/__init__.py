"""Studies: measurements about the method rather than steps of it (the extraction-protocol
differences of vislaw.studies.protocol_effects). The top library layer: they may use every
layer below, including the workflow's config check (docs/architecture.md)."""

"""Getting the real inputs into place: dataset archives (vislaw.prepare.download, .unpack,
.sources), Hub models and benchmark datasets (vislaw.prepare.hub), and the early refusal when
they are missing (vislaw.prepare.status)."""

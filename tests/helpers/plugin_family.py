"""An encoder family from another package, laid out as pip installs one: the plugin tests and
the zoo's run install it into a temporary site folder."""

from __future__ import annotations

from pathlib import Path

EXAMPLE_MODULE = '''
"""A patch-embedding encoder: the smallest real VisionEncoder, as a plugin would write one."""
from typing import Any

from vislaw.encoders.base import VisionEncoder


class PatchEncoder(VisionEncoder):
    family = "example_patches"

    @classmethod
    def token_grid(cls, spec):
        side = spec.input_size // (spec.patch_size or 16)
        return side, side

    def _load_pretrained(self, model_id):
        import torch

        model = self._build_tiny({})
        model.load_state_dict(torch.load(f"{model_id}/weights.pt", weights_only=True))
        return model

    def _build_tiny(self, overrides: dict[str, Any]):
        import torch

        patch = self.spec.patch_size or 16
        return torch.nn.Conv2d(3, int(overrides.get("width", 24)), patch, patch)

    @property
    def channels(self):
        return self.model.out_channels

    def _forward(self, pixels):
        return self.model(pixels).flatten(2).transpose(1, 2)
'''


def install_example(site: Path, family: str = "example_patches", target: str = "PatchEncoder"):
    """The example package as pip lays one out: its module and a dist-info naming the entry
    point (``family = module:Class``)."""
    package = site / "vislaw_example_family"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(EXAMPLE_MODULE)
    info = site / "vislaw_example_family-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: vislaw-example-family\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        f"[vislaw.encoders]\n{family} = vislaw_example_family:{target}\n"
    )

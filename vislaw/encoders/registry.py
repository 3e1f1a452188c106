"""The only map from a family name to its class, and config -> spec resolution.

Adding a family: one module with a :class:`VisionEncoder` subclass plus one line in FAMILIES.
Adding one from another package, without forking this one: an entry point in the
``vislaw.encoders`` group, named as the family, pointing at the class
(``my_family = "my_pkg.encoders:MyEncoder"``); :func:`load_plugin_families` adds it to
FAMILIES when a config names a family that is not built in. Adding an encoder: one config entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vislaw.config import ConfigError
from vislaw.encoders.base import EncoderSpec, VisionEncoder, register_families
from vislaw.encoders.clip import ClipEncoder
from vislaw.encoders.convnext import ConvNextEncoder
from vislaw.encoders.dinov2 import Dinov2Encoder
from vislaw.encoders.dit import DitEncoder
from vislaw.encoders.fusion import FusionEncoder
from vislaw.encoders.hf_auto import HfAutoEncoder
from vislaw.encoders.open_clip_models import OpenClipEncoder
from vislaw.encoders.sd3 import Sd3Encoder
from vislaw.encoders.sd_image_variations import SdImageVariationsEncoder
from vislaw.encoders.sd_unet import SdUnetEncoder
from vislaw.encoders.siglip import SiglipEncoder
from vislaw.encoders.timm_models import TimmEncoder

if TYPE_CHECKING:
    import torch

FAMILIES: dict[str, type[VisionEncoder]] = {
    "clip": ClipEncoder,
    "siglip": SiglipEncoder,
    "dinov2": Dinov2Encoder,
    "convnext": ConvNextEncoder,
    "sd_unet": SdUnetEncoder,
    "sd_image_variations": SdImageVariationsEncoder,
    "dit": DitEncoder,
    "sd3": Sd3Encoder,
    "hf_auto": HfAutoEncoder,
    "timm": TimmEncoder,
    "open_clip": OpenClipEncoder,
    "fusion": FusionEncoder,
}
# The index the modules below look a family up in (a fusion's members, the loading check):
# this very dict, so the plugin families added to it later are found there too.
register_families(FAMILIES)
PLUGIN_GROUP = "vislaw.encoders"


def load_plugin_families() -> dict[str, type[VisionEncoder]]:
    """Add the families other installed packages register under :data:`PLUGIN_GROUP` to
    FAMILIES (once each; a built-in name cannot be taken over) and return them. Read only when
    a config names a family that is not built in, so importing the registry stays cheap."""
    from importlib.metadata import entry_points

    found: dict[str, type[VisionEncoder]] = {}
    for point in entry_points(group=PLUGIN_GROUP):
        if point.name in FAMILIES:
            continue
        cls = point.load()
        where = f"entry point '{point.name} = {point.value}' ({PLUGIN_GROUP})"
        if not (isinstance(cls, type) and issubclass(cls, VisionEncoder)):
            raise ConfigError(where, "does not name a vislaw VisionEncoder subclass")
        if cls.family != point.name:
            raise ConfigError(where, f"names a class of family '{cls.family}'")
        found[point.name] = cls
    FAMILIES.update(found)
    return found


def family_class(family: str) -> type[VisionEncoder]:
    if family not in FAMILIES:
        load_plugin_families()
    try:
        return FAMILIES[family]
    except KeyError:
        raise KeyError(f"unknown encoder family '{family}'; known: {sorted(FAMILIES)}") from None


def default_protocol(config: Mapping[str, Any]) -> str:
    """``features.protocol`` of a checked config: the protocol of every encoder that does not
    name its own."""
    return str(config["features"]["protocol"])


def _spec_from_entry(
    name: str, entry: Mapping[str, Any], seed: int, protocol: str = "vislaw"
) -> EncoderSpec:
    tiny = entry.get("tiny")
    if not entry.get("model_id") and not (tiny or tiny == {}):
        raise ConfigError(
            f"encoders.{name}",
            "needs model_id (a real checkpoint) or tiny: true (its random-init small twin)",
        )
    if tiny is True:
        tiny = {}
    elif tiny is False:
        tiny = None
    return EncoderSpec(
        name=name,
        family=entry["family"],
        input_size=int(entry["input_size"]),
        model_id=entry.get("model_id"),
        tiny=tiny,
        patch_size=entry.get("patch_size"),
        layer=entry.get("layer"),
        timestep=entry.get("timestep"),
        up_block=entry.get("up_block"),
        fifth_stage=bool(entry["fifth_stage"]),
        env=entry.get("env"),
        options=dict(entry["options"]),
        seed=encoder_seed(seed, name),
        protocol=str(entry.get("protocol", protocol)),
    )


def encoder_seed(seed: int, name: str) -> int:
    """The init seed of an encoder's tiny twin: the run seed mixed with the encoder's name, so
    two twins of one family (clip224 and openclip, say) are different random models."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def resolve_encoders(config: Mapping[str, Any]) -> dict[str, EncoderSpec]:
    """Specs for every encoder of a schema-checked config; fusions hold their members' specs.

    Raises ConfigError (naming the key) for an unknown family, a fusion member that is missing,
    itself a fusion, or whose token grid differs from the other members'.
    """
    entries: Mapping[str, Mapping[str, Any]] = config["encoders"]
    seed = int(config["seed"])
    protocol = default_protocol(config)
    specs: dict[str, EncoderSpec] = {}
    if any(entry["family"] not in FAMILIES for entry in entries.values()):
        load_plugin_families()
    for name, entry in entries.items():
        if entry["family"] not in FAMILIES:
            raise ConfigError(
                f"encoders.{name}.family",
                f"unknown family '{entry['family']}'; known: {sorted(FAMILIES)} (a family from "
                f"another package registers under the '{PLUGIN_GROUP}' entry points)",
            )
        if entry["family"] != "fusion":
            specs[name] = _spec_from_entry(name, entry, seed, protocol)
            # The grid arithmetic refuses impossible sizes (ConfigError) before any job runs.
            family_class(entry["family"]).token_grid(specs[name])
    for name, entry in entries.items():
        if entry["family"] != "fusion":
            continue
        members = []
        for member in entry["members"]:
            key = f"encoders.{name}.members"
            if member in entries and entries[member]["family"] == "fusion":
                raise ConfigError(key, f"member '{member}' is itself a fusion")
            if member not in specs:
                raise ConfigError(key, f"member '{member}' is not an encoder of this config")
            members.append(specs[member])
        grids = {m.name: family_class(m.family).token_grid(m) for m in members}
        if len(set(grids.values())) != 1:
            raise ConfigError(
                f"encoders.{name}.members", f"token grids differ, cannot concatenate: {grids}"
            )
        fused = str(entry.get("protocol", protocol))
        mixed = {m.name: m.protocol for m in members if m.protocol != fused}
        if mixed:
            raise ConfigError(
                f"encoders.{name}.protocol",
                f"fusion protocol '{fused}' differs from its members' {mixed}",
            )
        specs[name] = EncoderSpec(
            name=name,
            family="fusion",
            input_size=members[0].input_size,
            members=tuple(members),
            env=entry.get("env"),
            seed=seed,
            protocol=fused,
        )
    return {name: specs[name] for name in entries}


def token_grid(spec: EncoderSpec) -> tuple[int, int]:
    return family_class(spec.family).token_grid(spec)


def feature_layout(spec: EncoderSpec) -> str:
    """The channel layout of a spec's features (VisionEncoder.layout_for), without a model."""
    return family_class(spec.family).layout_for(spec)


def conda_env(spec: EncoderSpec) -> str:
    return family_class(spec.family).env_for(spec)


def build_encoder(
    spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None
) -> VisionEncoder:
    """Instantiate the encoder a spec describes (real weights or its seeded tiny twin)."""
    return family_class(spec.family)(spec, device=device, dtype=dtype)


def encoder_spec(
    specs: Mapping[str, EncoderSpec], name: str, source: str = "the config"
) -> EncoderSpec:
    """The spec of encoder ``name``; a ConfigError naming the configured encoders otherwise.

    The one check every entry point that takes an encoder name makes (CLIs, workflow scripts,
    the lmms-eval plugin), so the message is the same wherever a name is mistyped.
    """
    if name not in specs:
        raise ConfigError("encoders", f"encoder {name!r} is not in {source} ({sorted(specs)})")
    return specs[name]

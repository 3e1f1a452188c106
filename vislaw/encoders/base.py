"""The contract every vision family fulfils, and the spec that configures one encoder.

A family is one small module with one :class:`VisionEncoder` subclass. The class is a light
wrapper: importing it costs nothing (heavy libraries are imported inside methods), so the
Snakefile can ask a family for its token grid while checking the config, before any job starts.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError

if TYPE_CHECKING:
    import torch
    from PIL import Image

# Normalisation constants of the families' own processors.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# SigLIP and the diffusion models take pixels in [-1, 1].
HALF_MEAN = (0.5, 0.5, 0.5)
HALF_STD = (0.5, 0.5, 0.5)

# Feature protocols (docs/encoders.md, "Two protocols"): ours, and the authors' extraction.
PROTOCOLS: tuple[str, ...] = ("vislaw", "paper")
# What features are for: an MLLM's input, or the C score's cached SPair features (the authors
# computed those with another preprocessing than their MLLMs saw).
PURPOSES: tuple[str, ...] = ("mllm", "c_score")

# The family index: vislaw.encoders.registry, the only module that imports every family,
# registers its name -> class map here (:func:`register_families`), so that a module below it
# that needs another family's class (a fusion's members, the loading check's hint) asks
# :func:`registered_families` instead of importing the registry back (an import cycle).
_FAMILY_INDEX: list[Mapping[str, type[VisionEncoder]]] = []


def register_families(families: Mapping[str, type[VisionEncoder]]) -> None:
    """Make ``families`` (the registry's map, shared, so later additions show) the index that
    :func:`registered_families` returns."""
    _FAMILY_INDEX[:] = [families]


def registered_families() -> Mapping[str, type[VisionEncoder]]:
    """The registry's name -> class map (RuntimeError if vislaw.encoders.registry, which
    registers it on import, was never imported)."""
    if not _FAMILY_INDEX:
        raise RuntimeError("no encoder families registered: import vislaw.encoders.registry first")
    return _FAMILY_INDEX[0]


@dataclass(frozen=True)
class EncoderSpec:
    """Everything needed to build one vision representation, resolved from its config entry.

    ``tiny`` is None for the real checkpoint (``model_id``), or a mapping of overrides for the
    family's small random-init twin (an empty mapping means the family's tiny defaults).
    Unset family options (``layer``, ``timestep`` ...) are None and take the family default.
    ``protocol`` is ``vislaw`` (one clean geometry, each model's documented conditioning) or
    ``paper`` (the authors' preprocessing, conditioning and channel order).
    """

    name: str
    family: str
    input_size: int = 224
    model_id: str | None = None
    tiny: Mapping[str, Any] | None = None
    patch_size: int | None = None
    layer: int | None = None
    timestep: int | None = None
    up_block: int | None = None
    fifth_stage: bool = False
    members: tuple[EncoderSpec, ...] = ()
    env: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    seed: int = 0
    protocol: str = "vislaw"

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(
                f"encoder '{self.name}': protocol {self.protocol!r} is not one of {PROTOCOLS}"
            )

    @property
    def is_paper(self) -> bool:
        return self.protocol == "paper"

    @property
    def is_tiny(self) -> bool:
        return self.tiny is not None

    def to_attrs(self) -> dict[str, Any]:
        """A JSON-serialisable description (stored with features so a file names its source)."""
        data = asdict(self)
        data["members"] = [m.name for m in self.members]
        data["tiny"] = dict(self.tiny) if self.tiny is not None else None
        data["options"] = dict(self.options)
        return data


def patch_grid(spec: EncoderSpec, patch: int) -> tuple[int, int]:
    """(side, side) of a square input cut into ``patch``-pixel patches; an input size that is
    not a multiple is refused naming the key (before any job, at config check)."""
    if spec.input_size % patch:
        raise ConfigError(
            f"encoders.{spec.name}.input_size",
            f"{spec.input_size} is not a multiple of the patch size {patch}",
        )
    return spec.input_size // patch, spec.input_size // patch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Random-init inside a forked RNG so a tiny twin is the same model in every job."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class VisionEncoder(ABC):
    """One vision representation: preprocessing, a frozen model, and patch-token features.

    Subclasses set ``family``, ``conda_env``, ``mean``/``std`` and implement
    :meth:`token_grid`, :meth:`_load_pretrained`, :meth:`_build_tiny` and :meth:`_forward`.
    """

    family: ClassVar[str]
    conda_env: ClassVar[str] = "transformers"
    mean: ClassVar[tuple[float, float, float]] = HALF_MEAN
    std: ClassVar[tuple[float, float, float]] = HALF_STD
    # ``protocol: paper``: the square the authors' LLaVA training (image_aspect_ratio "square")
    # made for this family: "crop" (stock processor: shortest edge, centre crop) or "stretch".
    paper_geometry: ClassVar[str] = "stretch"
    # For "crop": the shortest edge before cropping, as a multiple of the input size.
    paper_resize_ratio: ClassVar[float] = 1.0
    # The files (glob patterns) of its Hub repo that the family's loading code reads, for
    # `prepare`; None: the transformers layout (vislaw.prepare.hub.TRANSFORMERS_FILES).
    hub_files: ClassVar[tuple[str, ...] | None] = None

    # The row of vislaw.cost.GPU_HOURS that costs one features job of the family.
    feature_cost: ClassVar[str] = "features"
    # The ``model_type`` values of a transformers config.json the family loads (a full CLIP
    # and its vision tower, say); vislaw.encoders.loading refuses a checkpoint of another type.
    # Empty: not checked (the diffusers families, hf_auto, timm; their tensors are still checked).
    model_types: ClassVar[frozenset[str]] = frozenset()
    # Tensors a checkpoint may hold that the family's class does not load (heads the feature
    # does not use), as regular expressions matched at the key's start (vislaw.encoders.loading).
    unused_heads: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def hub_patterns(cls, spec: EncoderSpec) -> tuple[str, ...] | None:
        """What `prepare` fetches for ``spec``: the family's ``hub_files``; a family whose entry
        can need more (remote code, a variant's extra folders) overrides this."""
        return cls.hub_files

    @classmethod
    def check_spec(cls, spec: EncoderSpec) -> None:
        """Refuse, with a ConfigError naming the entry's key, what the schema cannot see but
        the spec and the model's cached config can (grid, layer, timestep; docs/refuses.md),
        before any job. Nothing by default; ``vislaw.checks`` calls it for every encoder."""
        return None

    def __init__(self, spec: EncoderSpec, device: str = "cpu", dtype: torch.dtype | None = None):
        import torch

        if spec.family != self.family:
            raise ValueError(f"encoder '{spec.name}' has family {spec.family}, not {self.family}")
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype or torch.float32
        if spec.is_tiny:
            with seeded(spec.seed):
                model = self._build_tiny(dict(spec.tiny or {}))
        else:
            model = self._load_pretrained(spec.model_id)
        self.model = model.to(self.device, self.dtype).eval().requires_grad_(False)

    # ---- static facts (no model needed) -------------------------------------------------------
    @classmethod
    @abstractmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        """(rows, cols) of the feature grid for this spec, from arithmetic alone."""

    @classmethod
    def env_for(cls, spec: EncoderSpec) -> str:
        return spec.env or cls.conda_env

    # ---- building ----------------------------------------------------------------------------
    @abstractmethod
    def _load_pretrained(self, model_id: str | None) -> torch.nn.Module:
        """Load the real checkpoint (hub id or local folder) with stock library classes."""

    @abstractmethod
    def _build_tiny(self, overrides: dict[str, Any]) -> torch.nn.Module:
        """Build the small random-init twin from the library's config class (already seeded)."""

    # ---- running -----------------------------------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        return self.token_grid(self.spec)

    @property
    @abstractmethod
    def channels(self) -> int:
        """Feature channels C of ``encode``'s output."""

    def geometry(self, purpose: str = "mllm") -> dict[str, Any]:
        """How images become this encoder's square input, as :func:`images_to_tensor` kwargs.

        ``vislaw``: letterbox, the family's mean/std, for every purpose. ``paper``: for the MLLM
        the family's square (``paper_geometry``) with its own mean/std; for the C score every
        family stretched and fed [-1, 1] (the authors' ``extract_feature.py``)."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose {purpose!r} is not one of {PURPOSES}")
        size = self.spec.input_size
        if not self.spec.is_paper:
            return {"geometry": "letterbox", "mean": self.mean, "std": self.std}
        if purpose == "c_score":
            return {"geometry": "stretch", "mean": HALF_MEAN, "std": HALF_STD}
        return {
            "geometry": self.paper_geometry,
            "mean": self.mean,
            "std": self.std,
            "resize_to": round(size * self.paper_resize_ratio),
            "truncate_fill": True,
        }

    def preprocess(self, images: Sequence[Image.Image], purpose: str = "mllm") -> torch.Tensor:
        """Each image squared to ``input_size`` and normalised, as the protocol says for
        ``purpose`` (:meth:`geometry`): (B, 3, S, S)."""
        from vislaw.encoders.preprocess import images_to_tensor

        return images_to_tensor(images, self.spec.input_size, **self.geometry(purpose))

    @classmethod
    def authors_reading(cls, spec: EncoderSpec) -> dict[str, tuple[str, int]]:
        """The keys the authors' training writes into a checkpoint's config.json for this
        family, each with the spec key it corresponds to and the value this spec implies
        (``vislaw.vlm.llava`` compares them on import). Only their diffusion towers record
        any (``up_ft_index``, ``img_size``)."""
        return {}

    @classmethod
    def layout_for(cls, spec: EncoderSpec) -> str:
        """How a feature vector's channels are ordered: what a projector's input columns were
        trained on. Row-major tokens with the model's own channels, unless a family groups
        tokens (space-to-depth), where the protocols differ (vislaw.vlm.checkpoints checks).
        From the spec alone, so a checkpoint can be checked before any model is built."""
        return "tokens"

    def feature_layout(self) -> str:
        return self.layout_for(self.spec)

    def finish_c_features(self, feats: torch.Tensor) -> torch.Tensor:
        """The C-score feature grid from ``encode``'s output (identity unless the protocol
        rearranges the map, as the authors' DiT C-score features are transposed)."""
        return feats

    @abstractmethod
    def _forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model forward on normalised pixels; returns (B, H*W, C)."""

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Features (B, H*W, C) of preprocessed pixels, checked against the documented grid."""
        import torch

        with torch.inference_mode():
            feats = self._forward(pixels.to(self.device, self.dtype))
        return self._checked(feats, pixels.shape[0])

    def _checked(self, feats: torch.Tensor, batch: int) -> torch.Tensor:
        """``feats`` if it is (batch, H*W, C) for the documented grid, else a RuntimeError."""
        rows, cols = self.grid
        expected = (batch, rows * cols, self.channels)
        if tuple(feats.shape) != expected:
            raise RuntimeError(
                f"encoder '{self.spec.name}' gave features {tuple(feats.shape)}, expected {expected}"
            )
        return feats

    def encode_images(self, images: Sequence[Image.Image], purpose: str = "mllm") -> torch.Tensor:
        feats = self.encode(self.preprocess(images, purpose))
        return self.finish_c_features(feats) if purpose == "c_score" else feats

    # ---- partial finetuning (training recipes that update the encoder, e.g. ConvLLaVA) --------
    @classmethod
    def stage_count(cls, spec: EncoderSpec) -> int:
        """How many hierarchical stages the model has (0: not a staged backbone). Recipes that
        unfreeze "stage N onward" are checked against this before any job runs."""
        return 0

    def stage_modules(self) -> Sequence[torch.nn.Module]:
        """The hierarchical stages, input to output: what a recipe's stage index refers to."""
        raise NotImplementedError(f"family '{self.family}' has no hierarchical stages")

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for activation memory when encoder parts train (staged families)."""
        raise NotImplementedError(f"family '{self.family}' does not train encoder parts")

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """As :meth:`encode`, but with autograd, for training that updates encoder weights
        (frozen parts record no graph, since neither their inputs nor weights need grads)."""
        feats = self._forward(pixels.to(self.device, self.dtype))
        return self._checked(feats, pixels.shape[0])

    def load_trained(self, state: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Overwrite some of the model's tensors with trained values (keys and shapes of
        ``model.state_dict()``); the rest keep what the spec built. A key or shape that does
        not fit is an error naming ``source``: it would mean weights of another encoder."""
        own = self.model.state_dict()
        unknown = sorted(k for k in state if k not in own)
        if unknown:
            raise ValueError(
                f"{source or 'trained weights'}: tensors {unknown[:3]} are not in encoder "
                f"'{self.spec.name}'"
            )
        bad = sorted(k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape))
        if bad:
            raise ValueError(
                f"{source or 'trained weights'}: shapes of {bad[:3]} differ from encoder "
                f"'{self.spec.name}'"
            )
        self.model.load_state_dict(dict(state), strict=False)

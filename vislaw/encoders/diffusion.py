"""What the diffusion families (sd_unet, sd_image_variations, dit, sd3) share.

Every diffusion feature is read the same way: the image (pixels in [-1, 1]) goes through the
VAE encoder (the posterior mean, shifted and scaled as the model was trained), is noised to a
small timestep ``t`` (default 1) with a fixed seeded noise map, and one internal activation of
the denoiser is captured with a forward hook. The hook also stops the forward there: the layers
after it cannot change the feature, and skipping them saves most of a UNet's decoder.

The noise map is one (1, C, h, w) draw from a CPU generator seeded with the run's seed, shared
by every image: features do not depend on batch size, batch composition or device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.base import HALF_MEAN, HALF_STD, EncoderSpec, VisionEncoder
from vislaw.encoders.checks import cached_json

if TYPE_CHECKING:
    import torch

# Real VAEs of every family downsample by 8.
REAL_VAE_FACTOR = 8
# DDPM-style training schedules of every diffusion family here (SD 1.x/2.x/XL, DiT, SD3's
# sigma = t / 1000): the fallback when a real checkpoint's scheduler config is not cached.
DEFAULT_TRAIN_TIMESTEPS = 1000
# Subfolders of a diffusers repo that the families' loading code reads (their ``hub_folders``).
HUB_TEXT = ("text_encoder", "tokenizer")  # SD 1.5/2.1's CLIP text encoder
HUB_SECOND_TEXT = ("text_encoder_2", "tokenizer_2")  # SDXL's and SD3's second one
# Tiny VAE: four blocks like the real one (factor 8), a handful of channels.
TINY_VAE: dict[str, Any] = {
    "block_out_channels": (8, 8, 16, 16),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 4,
}
# Tiny CLIP text encoder for the empty prompt: 8 positions instead of 77 (BOS, EOS, padding).
TINY_TEXT: dict[str, Any] = {
    "vocab_size": 64,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 8,
    "bos_token_id": 62,
    "eos_token_id": 63,
    "pad_token_id": 63,
    "projection_dim": 32,
}


class _Captured(Exception):
    """Carries a hooked module's output out of the forward (and stops the forward)."""

    def __init__(self, output: Any):
        super().__init__()
        self.output = output


def forward_until(module: torch.nn.Module, run: Callable[[], Any]) -> Any:
    """Call ``run()`` (a model forward) and return ``module``'s output, skipping what follows."""

    def hook(_module: torch.nn.Module, _inputs: Any, output: Any) -> None:
        raise _Captured(output)

    handle = module.register_forward_hook(hook)
    try:
        run()
    except _Captured as captured:
        return captured.output
    finally:
        handle.remove()
    raise RuntimeError(f"{type(module).__name__} was not called by the forward")


# Channel orders of the 2x2 space-to-depth features, per protocol: ours stacks the cells row by
# row (dy outer), the authors' unfold chain stacks them column by column (dx outer).
S2D_ORDERS = {"vislaw": "dy,dx,D", "paper": "dx,dy,D"}


def space_to_depth(
    tokens: torch.Tensor, rows: int, cols: int, factor: int = 2, order: str = "dy,dx,D"
) -> torch.Tensor:
    """(B, rows*cols, D) row-major tokens -> (B, rows/f * cols/f, f*f*D), f x f cells stacked.

    Used for the transformer denoisers (DiT, SD3), whose token grid is 2x finer than the UNet
    features of the same input. ``order`` is the channel order: "dy,dx,D" (ours) or "dx,dy,D"
    (the authors'): the same numbers, columns permuted.
    """
    batch, _, dim = tokens.shape
    grid = tokens.reshape(batch, rows // factor, factor, cols // factor, factor, dim)
    if order == "dy,dx,D":
        grid = grid.permute(0, 1, 3, 2, 4, 5)
    elif order == "dx,dy,D":
        grid = grid.permute(0, 1, 3, 4, 2, 5)
    else:
        raise ValueError(f"unknown space-to-depth order {order!r}; known: {sorted(S2D_ORDERS)}")
    return grid.reshape(batch, (rows // factor) * (cols // factor), factor * factor * dim)


def swap_s2d_order(features: torch.Tensor) -> torch.Tensor:
    """2x2 space-to-depth features in one channel order -> the other ((dy, dx, D) <->
    (dx, dy, D)): the (0, 1) and (1, 0) cells' channel blocks trade places."""
    import torch

    blocks = torch.chunk(features, 4, dim=-1)
    return torch.cat([blocks[0], blocks[2], blocks[1], blocks[3]], dim=-1)


def tiny_section(spec: EncoderSpec, key: str) -> dict[str, Any]:
    """The overrides under ``tiny.<key>`` (e.g. ``tiny: {unet: {block_out_channels: [8, 16]}}``)."""
    section = (spec.tiny or {}).get(key, {})
    if not isinstance(section, Mapping):
        raise ConfigError(
            f"encoders.{spec.name}.tiny.{key}", f"expected a mapping, got {section!r}"
        )
    return dict(section)


def build_tiny_vae(overrides: Mapping[str, Any], defaults: Mapping[str, Any] = TINY_VAE):
    from diffusers import AutoencoderKL

    kwargs = {**defaults, **overrides}
    blocks = len(kwargs["block_out_channels"])
    kwargs.setdefault("down_block_types", ("DownEncoderBlock2D",) * blocks)
    kwargs.setdefault("up_block_types", ("UpDecoderBlock2D",) * blocks)
    return AutoencoderKL(**kwargs)


def empty_prompt_ids(tokenizer: Any) -> torch.Tensor:
    """Token ids of the empty prompt, padded as the pipelines pad it: (1, model_max_length)."""
    return tokenizer(
        "",
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def tiny_empty_prompt_ids(config: Any) -> torch.Tensor:
    """The empty prompt without a tokenizer: BOS, EOS, then padding to the position count."""
    import torch

    length = config.max_position_embeddings
    ids = [config.bos_token_id, config.eos_token_id] + [config.pad_token_id] * (length - 2)
    return torch.tensor([ids], dtype=torch.long)


def build_tiny_text_encoders(
    overrides: Mapping[str, Any], count: int, with_projection: Sequence[bool]
) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """``count`` tiny CLIP text encoders and the ids of the empty prompt for each."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    encoders = []
    for projected in with_projection[:count]:
        config = CLIPTextConfig(**{**TINY_TEXT, **overrides})
        model_class = CLIPTextModelWithProjection if projected else CLIPTextModel
        encoders.append((model_class(config).eval(), tiny_empty_prompt_ids(config)))
    return encoders


def load_text_encoders(
    model_id: str, folders: Sequence[tuple[str, str, bool]], owner: str, family: str
) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Text encoders (subfolder, tokenizer subfolder, with projection) and empty-prompt ids.

    The tokenizer class is named (every SD tokenizer folder holds a CLIP tokenizer) rather than
    found by AutoTokenizer: transformers 5's AutoTokenizer also asks for ``tokenizer/config.json``,
    which these repos do not have, and in an offline cache filled by ``prepare``
    (snapshot_download) that unanswerable question fails the load."""
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from vislaw.encoders.loading import load_checked

    encoders = []
    for encoder_folder, tokenizer_folder, projected in folders:
        model_class = CLIPTextModelWithProjection if projected else CLIPTextModel
        model = load_checked(
            model_class, model_id, family=family, owner=owner, subfolder=encoder_folder
        ).eval()
        tokenizer = CLIPTokenizer.from_pretrained(model_id, subfolder=tokenizer_folder)
        encoders.append((model, empty_prompt_ids(tokenizer)))
    return encoders


class DiffusionEncoder(VisionEncoder):
    """A VAE + denoiser, held in ``self.model`` (a ModuleDict with ``vae`` and the denoiser).

    Conditioning that does not depend on the image (the empty prompt's embeddings) is computed
    once at build time and kept as buffers of ``self.model``; the text encoders are then dropped.
    """

    conda_env = "diffusers"
    mean, std = HALF_MEAN, HALF_STD
    default_timestep: ClassVar[int] = 1
    tiny_vae_defaults: ClassVar[dict[str, Any]] = TINY_VAE
    # The keys a ``tiny:`` mapping may hold (a typo would otherwise be silently ignored).
    tiny_keys: ClassVar[frozenset[str]] = frozenset({"vae"})
    # One denoising step + feature hooks at 512-768 px: dearer than a ViT (vislaw.cost).
    feature_cost = "features_diffusion"
    # The diffusers subfolders the family's loading code reads (what `prepare` fetches).
    hub_folders: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def hub_patterns(cls, spec: EncoderSpec) -> tuple[str, ...] | None:
        """``model_index.json`` and the configs, vocabularies and safetensors weights of each
        of :meth:`hub_folder_names`."""
        patterns = ["model_index.json"]
        for folder in cls.hub_folder_names(spec):
            patterns += [
                f"{folder}/*.json",
                f"{folder}/*.txt",
                f"{folder}/*.model",
                f"{folder}/*.safetensors",
            ]
        return tuple(patterns)

    @classmethod
    def hub_folder_names(cls, spec: EncoderSpec) -> tuple[str, ...]:
        """The subfolders ``spec``'s model loads: the family's ``hub_folders``; a family whose
        variants differ (SDXL's second text encoder) overrides this."""
        return cls.hub_folders

    @classmethod
    def train_timesteps(cls, spec: EncoderSpec) -> int:
        """The timesteps the denoiser was trained on: a real checkpoint's cached scheduler
        config, else :data:`DEFAULT_TRAIN_TIMESTEPS`."""
        if spec.tiny is None:
            scheduler = cached_json(spec.model_id, "scheduler/scheduler_config.json") or {}
            steps = scheduler.get("num_train_timesteps")
            if isinstance(steps, int) and steps > 0:
                return steps
        return DEFAULT_TRAIN_TIMESTEPS

    @classmethod
    def check_spec(cls, spec: EncoderSpec) -> None:
        """``timestep`` inside the denoiser's training schedule."""
        if spec.timestep is not None:
            steps = cls.train_timesteps(spec)
            if not 0 <= spec.timestep < steps:
                raise ConfigError(
                    f"encoders.{spec.name}.timestep",
                    f"{spec.timestep} is out of range: the model was trained on timesteps "
                    f"0..{steps - 1}",
                )

    @classmethod
    def vae_factor(cls, spec: EncoderSpec) -> int:
        if spec.tiny is None:
            return REAL_VAE_FACTOR
        unknown = set(spec.tiny) - cls.tiny_keys
        if unknown:
            raise ConfigError(
                f"encoders.{spec.name}.tiny",
                f"unknown keys {sorted(unknown)}; {spec.family} takes {sorted(cls.tiny_keys)}",
            )
        vae = {**cls.tiny_vae_defaults, **tiny_section(spec, "vae")}
        return 2 ** (len(vae["block_out_channels"]) - 1)

    @classmethod
    def latent_side(cls, spec: EncoderSpec) -> int:
        factor = cls.vae_factor(spec)
        if spec.input_size % factor:
            raise ConfigError(
                f"encoders.{spec.name}.input_size",
                f"{spec.input_size} is not a multiple of the VAE factor {factor}",
            )
        return spec.input_size // factor

    def _check_loaded(self, what: str, found: int, expected: int, key: str = "model_id") -> None:
        """Refuse a checkpoint whose layout contradicts the grid arithmetic (before any run)."""
        if found != expected:
            raise ConfigError(
                f"encoders.{self.spec.name}.{key}",
                f"{self.spec.model_id}: {what} is {found}, the grid arithmetic assumes {expected}",
            )

    def _load_vae(self, model_id: str | None) -> torch.nn.Module:
        from diffusers import AutoencoderKL

        from vislaw.encoders.loading import load_checked

        vae = load_checked(
            AutoencoderKL, model_id, family=self.family, owner=self.spec.name, subfolder="vae"
        )
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self._check_loaded("the VAE's downsampling", factor, REAL_VAE_FACTOR)
        return vae

    @property
    def timestep(self) -> int:
        return self.default_timestep if self.spec.timestep is None else self.spec.timestep

    def _latents(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE posterior mean, shifted and scaled as in the model's training (``paper``: only
        scaled, as the authors' pipelines never subtract ``shift_factor``; SD3's is not 0)."""
        vae = self.model["vae"]
        mean = vae.encode(pixels).latent_dist.mean
        shift = 0.0 if self.spec.is_paper else vae.config.shift_factor or 0.0
        return (mean - shift) * vae.config.scaling_factor

    def _noise(self, latents: torch.Tensor) -> torch.Tensor:
        """The seeded noise map, broadcast over the batch (same noise for every image)."""
        import torch

        shape = (1, *latents.shape[1:])
        cached = getattr(self, "_noise_map", None)
        if cached is None or tuple(cached.shape) != shape:
            generator = torch.Generator().manual_seed(self.spec.seed)
            self._noise_map = torch.randn(shape, generator=generator)
        return self._noise_map.to(latents.device, latents.dtype).expand_as(latents)

    @staticmethod
    def _text_condition(
        encoders: Sequence[tuple[torch.nn.Module, torch.Tensor]], layer: int | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-token embeddings (channel-concatenated over encoders) and the pooled ones.

        ``layer`` None takes ``last_hidden_state`` (SD 1.x/2.x), else ``hidden_states[layer]``
        (SDXL and SD3 take -2). Pooled: the projected ``text_embeds`` of each encoder that has a
        projection, in order (SDXL uses its second encoder's, SD3 concatenates both).
        """
        import torch

        tokens, pooled = [], []
        with torch.no_grad():
            for encoder, ids in encoders:
                out = encoder(input_ids=ids, output_hidden_states=layer is not None)
                tokens.append(out.last_hidden_state if layer is None else out.hidden_states[layer])
                if hasattr(out, "text_embeds"):
                    pooled.append(out.text_embeds)
        return torch.cat(tokens, dim=-1), pooled


class DiffusionTransformerEncoder(DiffusionEncoder):
    """Transformer denoisers (DiT, SD3): latent patches as tokens, 2x2 space-to-depth'd.

    The grid is input / VAE factor / patch / 2 with 4*D channels, so that a DiT-XL/2 or SD3 at
    512 px gives the 16x16 grid of the UNet features at comparable sizes. The tiny transformer's
    overrides go under ``tiny.transformer``.
    """

    real_patch: ClassVar[int] = 2  # DiT-XL/2, SD3
    tiny_keys = frozenset({"vae", "transformer"})
    tiny_transformer: ClassVar[dict[str, Any]]

    @classmethod
    def patch(cls, spec: EncoderSpec) -> int:
        if spec.tiny is None:
            return spec.patch_size or cls.real_patch
        overrides = tiny_section(spec, "transformer")
        return int(overrides.get("patch_size", cls.tiny_transformer["patch_size"]))

    @classmethod
    def token_grid(cls, spec: EncoderSpec) -> tuple[int, int]:
        latent, patch = cls.latent_side(spec), cls.patch(spec)
        if latent % (2 * patch):
            raise ConfigError(
                f"encoders.{spec.name}.input_size",
                f"latent side {latent} is not a multiple of 2 x patch {patch} (2x2 grouping)",
            )
        side = latent // patch // 2
        return side, side

    def _check_transformer(self, transformer: torch.nn.Module) -> None:
        found = transformer.config.patch_size
        self._check_loaded(
            "the transformer's patch size", found, self.patch(self.spec), "patch_size"
        )

    @property
    def channels(self) -> int:
        config = self.model["transformer"].config
        return 4 * config.num_attention_heads * config.attention_head_dim

    def _to_grid(self, tokens: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Row-major patch tokens of ``latents`` -> 2x2 space-to-depth features, in the
        protocol's channel order."""
        side = latents.shape[-1] // self.model["transformer"].config.patch_size
        return space_to_depth(tokens, side, side, order=S2D_ORDERS[self.spec.protocol])

    @classmethod
    def layout_for(cls, spec: EncoderSpec) -> str:
        return f"s2d2:{S2D_ORDERS[spec.protocol]}"

    @classmethod
    def authors_reading(cls, spec: EncoderSpec) -> dict[str, tuple[str, int]]:
        """Their ``up_ft_index`` is the transformer block (``layer``; -1 when unset)."""
        block = -1 if spec.layer is None else spec.layer
        return {"up_ft_index": ("layer", block), "img_size": ("input_size", spec.input_size)}

    @property
    def block_index(self) -> int:
        """The transformer block whose output is the feature: ``layer`` (default -1, the last;
        the authors' training default ``up_ft_index: 0`` is ``layer: 0``)."""
        return -1 if self.spec.layer is None else self.spec.layer

    def _block(self) -> torch.nn.Module:
        blocks = self.model["transformer"].transformer_blocks
        if not -len(blocks) <= self.block_index < len(blocks):
            raise ConfigError(
                f"encoders.{self.spec.name}.layer",
                f"{self.block_index} is outside the {len(blocks)} transformer blocks",
            )
        return blocks[self.block_index]

"""Training recipes: which parameters train in which run of a workflow stage.

The workflow has two training stages per encoder (rules ``stage1`` and ``stage2``). A recipe
maps them onto one or more *phases*, each an ordinary training run (own settings, own
``loss.csv`` and resumable checkpoints) that starts from the previous phase's folder:

``llava`` (default; LLaVA-1.5)
    stage 1: projector (encoder and LLM frozen); stage 2: projector + LLM.
``convllava`` (ConvLLaVA, arXiv 2405.15738; staged encoders with ``fifth_stage: true``)
    stage 1 runs two phases in one job:

    - ``init`` (ConvLLaVA stage 1, projector initialisation): the new fifth stage + projector,
      written to ``<stage-1 folder>/init/``;
    - ``pretrain`` (ConvLLaVA stage 2, vision-language pretraining): encoder stages
      ``>= unfreeze_from_stage`` (the fifth included) + projector, and the LLM with
      ``train_llm`` (as ConvLLaVA's released ``stage_2.sh``), written to the stage-1 folder.

    stage 2 is ConvLLaVA stage 3 (instruction tuning): projector + LLM, the encoder frozen with
    the weights stage 1 trained.

The recipe is chosen per encoder (``train.recipes``, falling back to ``train.recipe``), so the
paper's other encoders keep LLaVA's recipe in the same run. Each recipe is one :class:`Recipe`
subclass in :data:`RECIPES`; adding one is that class, its registry entry and the schema's two
recipe enums (tests/unit/workflow/test_registries.py keeps them equal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from vislaw.config import ConfigError
from vislaw.encoders.registry import family_class
from vislaw.train.settings import StageSettings, TrainSettings

if TYPE_CHECKING:
    from vislaw.encoders.base import EncoderSpec, VisionEncoder

LAST_STAGE = -1  # python index of the last stage: ConvLLaVA's fifth
CONVLLAVA_INIT_DIR = "init"


@dataclass(frozen=True)
class Phase:
    """One training run of a workflow stage.

    ``encoder_from_stage``: None keeps the encoder frozen (outside the trained module tree);
    an index ``i`` trains ``encoder.stage_modules()[i:]`` (``-1``: the last stage only).
    ``subdir``: an intermediate phase writes ``<stage folder>/<subdir>``; the stage's last
    phase writes the stage folder itself.
    """

    recipe: str
    name: str
    stage: int
    train_llm: bool
    encoder_from_stage: int | None = None
    section: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    subdir: str | None = None

    @property
    def label(self) -> str:
        return f"{self.recipe}.{self.name}"


class Recipe:
    """One training recipe: the phases each workflow stage runs, whether they change encoder
    weights, and what it refuses at config check. One class per recipe, registered in
    :data:`RECIPES` (the schema's ``train.recipe`` / ``train.recipes`` enums are tested
    against its keys)."""

    name: ClassVar[str]
    # Whether stage 1 changes encoder weights (then every later consumer, features for the C
    # score included, must use stage 1's encoder; vislaw.cost adds its pretraining phase).
    trains_encoder: ClassVar[bool] = False
    # How vislaw.cost prices each workflow stage: one (anchor, data) pair per costed phase, where
    # ``anchor`` is the LLaVA-1.5 stage whose published hours scale it (what it trains) and
    # ``data`` the workflow stage whose samples it steps through (keys of vislaw.cost.REF_HOURS).
    cost_phases: ClassVar[Mapping[str, tuple[tuple[str, str], ...]]] = {
        "stage1": (("stage1", "stage1"),),
        "stage2": (("stage2", "stage2"),),
    }

    @classmethod
    def phases(cls, config: Mapping[str, Any], stage: int) -> list[Phase]:
        """The phases of workflow stage ``stage`` (1 or 2), in order: one plain run each."""
        return [Phase(cls.name, f"stage{stage}", stage, train_llm=stage == 2)]

    @classmethod
    def check(cls, config: Mapping[str, Any], spec: EncoderSpec, key: str) -> None:
        """Refuse, naming ``key`` (the config entry choosing the recipe), an encoder the recipe
        cannot train. Any encoder by default."""
        return None


class LlavaRecipe(Recipe):
    """LLaVA-1.5: stage 1 the projector (encoder and LLM frozen), stage 2 projector + LLM."""

    name = "llava"


class ConvLlavaRecipe(Recipe):
    """ConvLLaVA (arXiv 2405.15738): stage 1 runs its init and pretrain phases, stage 2 is its
    instruction tuning (the module docstring)."""

    name = "convllava"
    trains_encoder = True
    # Stage 1 adds the pretrain phase, which trains the LLM as a stage-2 step does, on the
    # stage-1 captions (the init phase costs as LLaVA's stage 1).
    cost_phases = {
        "stage1": (("stage1", "stage1"), ("stage2", "stage1")),
        "stage2": (("stage2", "stage2"),),
    }

    @classmethod
    def phases(cls, config: Mapping[str, Any], stage: int) -> list[Phase]:
        if stage == 2:
            return super().phases(config, stage)
        conv = TrainSettings.from_config(config).convllava
        pretrain = dict(conv.pretrain)
        train_llm = bool(pretrain.pop("train_llm"))  # the schema's default: true
        return [
            Phase(
                cls.name,
                "init",
                1,
                train_llm=False,
                encoder_from_stage=LAST_STAGE,
                section="train.convllava.init",
                overrides=dict(conv.init),
                subdir=CONVLLAVA_INIT_DIR,
            ),
            Phase(
                cls.name,
                "pretrain",
                1,
                train_llm=train_llm,
                encoder_from_stage=conv.unfreeze_from_stage,
                section="train.convllava.pretrain",
                overrides=pretrain,
            ),
        ]

    @classmethod
    def check(cls, config: Mapping[str, Any], spec: EncoderSpec, key: str) -> None:
        """A staged encoder with its fifth stage appended, and ``unfreeze_from_stage`` one of
        its stages."""
        stages = family_class(spec.family).stage_count(spec)
        if not stages or not spec.fifth_stage:
            raise ConfigError(
                key,
                f"recipe convllava trains a staged encoder's appended fifth stage; "
                f"'{spec.name}' ({spec.family}) needs a family with stages (convnext) and "
                f"fifth_stage: true",
            )
        start = TrainSettings.from_config(config).convllava.unfreeze_from_stage
        if not 0 <= start < stages:
            raise ConfigError(
                "train.convllava.unfreeze_from_stage",
                f"{start} is not a stage index of '{spec.name}' (0..{stages - 1})",
            )


# The only map from a recipe name to its class.
RECIPES: dict[str, type[Recipe]] = {r.name: r for r in (LlavaRecipe, ConvLlavaRecipe)}


def recipe_for(config: Mapping[str, Any], encoder: str) -> str:
    """The recipe an encoder trains with: ``train.recipes[encoder]``, else ``train.recipe``."""
    train = TrainSettings.from_config(config)
    return train.recipes.get(encoder, train.recipe)


def recipe_class(config: Mapping[str, Any], encoder: str) -> type[Recipe]:
    """The class of the encoder's recipe; a ConfigError naming the key that chose an unknown
    one (the schema's enum refuses it first in a checked config)."""
    name = recipe_for(config, encoder)
    if name not in RECIPES:
        raise ConfigError(
            _recipe_key(config, encoder), f"unknown recipe {name!r}: {tuple(RECIPES)}"
        )
    return RECIPES[name]


def trains_encoder(config: Mapping[str, Any], encoder: str) -> bool:
    """Whether the encoder's recipe changes encoder weights (then stage 1 holds the encoder
    that every later consumer, features for the C score included, must use)."""
    return recipe_class(config, encoder).trains_encoder


def stage1_trains_llm(config: Mapping[str, Any], encoder: str) -> bool:
    """Whether stage 1's last phase trains the LLM (ConvLLaVA's pretraining with ``train_llm``):
    then the stage-1 folder holds an ``llm/`` that stage 2 and the A score load."""
    return stage_phases(config, 1, encoder)[-1].train_llm


def _recipe_key(config: Mapping[str, Any], encoder: str) -> str:
    recipes = TrainSettings.from_config(config).recipes
    return f"train.recipes.{encoder}" if encoder in recipes else "train.recipe"


def check_recipes(config: Mapping[str, Any], specs: Mapping[str, EncoderSpec]) -> None:
    """Refuse, naming the key, recipes an encoder cannot follow (before any job starts)."""
    train = TrainSettings.from_config(config)
    for name in train.recipes:
        if name not in specs:
            raise ConfigError(f"train.recipes.{name}", f"'{name}' is not an encoder of this config")
    for name, spec in specs.items():
        recipe_class(config, name).check(config, spec, _recipe_key(config, name))
        for member in spec.members:
            if trains_encoder(config, member.name):
                raise ConfigError(
                    f"encoders.{name}.members",
                    f"member '{member.name}' trains its encoder (recipe "
                    f"{recipe_for(config, member.name)}); a fusion would use the untrained one",
                )


def stage_phases(config: Mapping[str, Any], stage: int, encoder: str) -> list[Phase]:
    """The phases the workflow stage ``stage`` (1 or 2) runs for ``encoder``, in order."""
    if stage not in (1, 2):
        raise ValueError(f"stage must be 1 or 2, not {stage!r}")
    return recipe_class(config, encoder).phases(config, stage)


def phase_settings(config: Mapping[str, Any], phase: Phase) -> StageSettings:
    """The stage's settings (``train`` + ``train.stage<N>``) with the phase's overrides."""
    settings = StageSettings.from_config(config, phase.stage)
    if not phase.overrides:
        return settings
    settings = dataclasses.replace(
        settings,
        **phase.overrides,
        section=phase.section,
        overridden=frozenset(phase.overrides),
    )
    from vislaw.vlm.chat_templates import template_names

    if settings.template not in template_names():
        raise ConfigError(
            settings.key("template"),
            f"unknown template {settings.template!r}; known: {template_names()}",
        )
    return settings


def unfreeze_encoder(encoder: VisionEncoder, from_stage: int) -> list[str]:
    """Freeze the encoder, then let ``stage_modules()[from_stage:]`` train; returns the names
    (``encoder.model`` state-dict keys) of the parameters that now train."""
    encoder.model.requires_grad_(False)
    stages: Sequence[Any] = encoder.stage_modules()
    for stage in stages[from_stage:]:
        stage.requires_grad_(True)
    return [n for n, p in encoder.model.named_parameters() if p.requires_grad]

"""Where every file of a run goes: the one place that spells output paths and file names.

The rules (rules/*.smk) and the library both take their paths from here, so a renamed file or
folder cannot leave one side behind. :class:`RunLayout` names the outputs under
``<results_dir>/<run>/``; :func:`data_root` and :func:`data_path` resolve the data the config
points at (relative paths under ``data.root``).

Every method takes the names that vary (encoder, stage, benchmark ...) as arguments and returns a
``str``: the rules call them with Snakemake placeholders (``layout.features("{encoder}")`` is the
wildcard pattern of ``layout.features("clip224")``), so the pattern and the concrete path come
from the same definition. Library code wraps them in :class:`pathlib.Path` where it needs one.

Nothing heavy is imported here: the Snakefile and every job import this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "vislaw-demo-data.json"
"""The demo generator's manifest, in ``data.root`` (the synthetic data's one DAG output)."""

LMVR_SYNTHETIC_FOLDER = "lmvr_images"
"""Where the demo's synthetic LMVR ImageFolder goes, relative to ``data.root``."""

STAGE_INFO = "vlm.json"
"""A stage folder's model description; written last, so it marks the stage done."""
STAGE_PROJECTOR = "projector.safetensors"
STAGE_ENCODER = "encoder.safetensors"
"""The encoder tensors a recipe trained (ConvLLaVA): in stage 1's folder, carried into stage 2's."""
STAGE_LLM = "llm"
"""The fine-tuned LLM folder inside a stage folder (stage 2; stage 1 when ConvLLaVA's
pretraining trains the LLM)."""
STAGE_LOSS = "loss.csv"
"""A stage folder's per-step training loss (the training curves read it)."""
STAGES = ("stage1", "stage2")

LAW_FIGURE = "law.png"
"""Every benchmark's law figure in one (the report shows it beside the per-benchmark ones)."""
LAW_FILES = (
    "r2.csv",
    "coefficients.csv",
    "fit_stats.csv",
    "predictions.csv",
    "policy.csv",
    "policy_curves.csv",
    LAW_FIGURE,
    "law.svg",
    "law_overview.png",
    "summary.md",
)
"""What rule ``law`` writes into ``<run>/law/`` (vislaw.law.report.write_law_outputs)."""
LAW_STRATEGIES_FILE = "policy_strategies.csv"
"""The extra law output when ``law.strategies`` is set."""

LAW_REPORTED = frozenset(
    {"law.png", "law_overview.png", "r2.csv", "policy.csv", "coefficients.csv", LAW_STRATEGIES_FILE}
)
"""The law outputs shown in the HTML report (snakemake --report)."""

POLICY_ROUNDS_TABLE = "rounds.csv"
POLICY_RECOMMENDATION = "recommendation.md"
POLICY_PLOT = "predicted_vs_measured.png"
POLICY_FILES = (POLICY_ROUNDS_TABLE, POLICY_RECOMMENDATION, POLICY_PLOT)
"""What rule policy_report writes into ``<run>/policy/``."""

LAW_PAGES = (
    "summary.md",
    "r2.csv",
    "fit_stats.csv",
    "coefficients.csv",
    "policy.csv",
    LAW_STRATEGIES_FILE,
)
"""The law's tables and text shown as pages of the HTML report (rule report_tables), in order."""

LMVR_KINDS = ("lmvr", "baseline")
"""LMVR feature kinds: the MLLM's pooled hidden states, the encoder's own pooled tokens."""
LMVR_FEATURES = "features"
"""``<lmvr>/features/<encoder>/``: the kinds' HDF5 files and the responses."""
LMVR_MAPS = "maps"
"""``<lmvr>/maps/<encoder>/``: token-map PNGs and their index."""
LMVR_PROBE = "probe.csv"
LMVR_RESPONSES = "responses.jsonl"
LMVR_MAPS_INDEX = "index.csv"


def _placeholder(value: str) -> bool:
    """A Snakemake wildcard (``{stage}``): the rules build patterns with the same methods."""
    return value.startswith("{") and value.endswith("}")


LAW_FIGURES_DIR = "figures"
LAW_FIGURE_FORMATS = ("png", "svg", "pdf")
"""One figure per benchmark under ``<run>/law/figures/``: PNG for slides, SVG and PDF for papers."""


def law_figure_files(benchmarks: Iterable[str]) -> list[str]:
    """``figures/<benchmark>.<png|svg|pdf>`` for every benchmark, relative to the law folder."""
    return [f"{LAW_FIGURES_DIR}/{b}.{fmt}" for b in benchmarks for fmt in LAW_FIGURE_FORMATS]


def law_files(strategies: bool, benchmarks: Iterable[str] = ()) -> list[str]:
    """The law's output file names (with the strategies table when ``law.strategies``, and
    one figure per benchmark of ``benchmarks``)."""
    return [
        *LAW_FILES,
        *([LAW_STRATEGIES_FILE] if strategies else []),
        *law_figure_files(benchmarks),
    ]


def data_root(config: Mapping[str, Any]) -> Path:
    """``data.root``: every relative data path of the config is under it."""
    return Path(config["data"]["root"])


def resolve_data_path(root: str | Path, value: str | Path) -> Path:
    """The one rule for data paths: an absolute path stays, a relative one is under ``root``
    (``data.root``). vislaw.data.settings.DataSettings.path and the helpers below use it."""
    return Path(value) if Path(value).is_absolute() else Path(root) / value


def under_data_root(config: Mapping[str, Any], value: str | Path) -> Path:
    """A data path of the config: relative ones resolve against ``data.root``."""
    return resolve_data_path(data_root(config), value)


def data_path(config: Mapping[str, Any], key: str) -> Path:
    """``data.<key>`` (a path, or a section with a ``root``, e.g. ``data.spair``) resolved
    against ``data.root``; KeyError naming nothing else when the config lacks the key."""
    value = config["data"][key]
    if isinstance(value, Mapping):
        value = value["root"]
    return under_data_root(config, value)


@dataclass(frozen=True)
class RunLayout:
    """Every output path of one run, from the checked config's ``results_dir``, ``run`` and
    ``data.root``. Paths are strings joined with '/' (what the rules always wrote)."""

    results_dir: str
    run: str
    data_root: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RunLayout:
        """The layout of a checked config (check_config gives ``results_dir`` its default)."""
        return cls(
            results_dir=str(config["results_dir"]),
            run=str(config["run"]),
            data_root=str(config["data"]["root"]),
        )

    # -- the run folder, logs, benchmarks -------------------------------------------------
    @property
    def run_dir(self) -> str:
        """``<results_dir>/<run>``: every output of the run is under it."""
        return f"{self.results_dir}/{self.run}"

    def _under(self, *parts: str) -> str:
        return "/".join((self.run_dir, *parts))

    def log(self, *parts: str) -> str:
        """``logs/<parts...>.log`` (e.g. ``log("features", "{encoder}")``)."""
        return self._under("logs", *parts[:-1], f"{parts[-1]}.log")

    def benchmark(self, *parts: str) -> str:
        """Snakemake's benchmark TSV, ``benchmarks/<parts...>.tsv``."""
        return self._under("benchmarks", *parts[:-1], f"{parts[-1]}.tsv")

    # -- data -------------------------------------------------------------------------------
    @property
    def data_manifest(self) -> str:
        """The demo generator's manifest (the synthetic data's DAG output)."""
        return f"{self.data_root}/{MANIFEST_NAME}"

    @property
    def lmvr_synthetic_images(self) -> str:
        """The demo's generated LMVR ImageFolder."""
        return f"{self.data_root}/{LMVR_SYNTHETIC_FOLDER}"

    @property
    def prepare_dir(self) -> str:
        return self._under("prepare")

    def prepare_marker(self, source: str) -> str:
        """Rule prepare_data's (temporary) stamp for one data source."""
        return f"{self.prepare_dir}/data-{source}.done"

    @property
    def prepare_models_marker(self) -> str:
        return f"{self.prepare_dir}/models.done"

    def data_check(self, dataset: str) -> str:
        """check_data's report of one dataset (training and scoring start after it)."""
        return self._under("data_check", f"{dataset}.txt")

    # -- features, training -----------------------------------------------------------------
    def features(self, encoder: str) -> str:
        """An encoder's patch-token features (HDF5)."""
        return self._under("features", f"{encoder}.h5")

    @property
    def llm_dir(self) -> str:
        """The demo's tiny LLM (rule tiny_llm)."""
        return self._under("llm")

    def stage_dir(self, stage: str, encoder: str) -> str:
        """A trained stage's folder: ``stage1/<encoder>`` or ``stage2/<encoder>``."""
        if stage not in STAGES and not _placeholder(stage):
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
        return self._under(stage, encoder)

    def stage_info(self, stage: str, encoder: str) -> str:
        """A stage folder's vlm.json (marks the stage done)."""
        return f"{self.stage_dir(stage, encoder)}/{STAGE_INFO}"

    def stage_projector(self, stage: str, encoder: str) -> str:
        return f"{self.stage_dir(stage, encoder)}/{STAGE_PROJECTOR}"

    def stage_loss(self, stage: str, encoder: str) -> str:
        return f"{self.stage_dir(stage, encoder)}/{STAGE_LOSS}"

    def stage_encoder(self, stage: str, encoder: str) -> str:
        """A stage folder's trained encoder tensors (written only when the recipe trains it)."""
        return f"{self.stage_dir(stage, encoder)}/{STAGE_ENCODER}"

    def stage_llm(self, encoder: str, stage: str = "stage2") -> str:
        """A stage folder's fine-tuned LLM (stage 2's; stage 1's when ConvLLaVA trains it)."""
        return f"{self.stage_dir(stage, encoder)}/{STAGE_LLM}"

    # -- scores -----------------------------------------------------------------------------
    def c_score(self, encoder: str) -> str:
        return self._under("scores", "c_score", f"{encoder}.csv")

    @property
    def c_scores_table(self) -> str:
        return self._under("scores", "c_scores.csv")

    @property
    def a_scores_table(self) -> str:
        return self._under("scores", "a_scores.csv")

    @property
    def benchmarks_table(self) -> str:
        return self._under("scores", "benchmarks.csv")

    @property
    def law_input(self) -> str:
        """This run's measured A, C and benchmark scores as the law's tidy table."""
        return self._under("scores", "law_input.csv")

    def a_sample(self, benchmark: str) -> str:
        """The A score's seeded image sample of one benchmark."""
        return self._under("a_score", "samples", f"{benchmark}.json")

    def a_loglik(self, encoder: str) -> str:
        return self._under("a_score", "loglik", f"{encoder}.json")

    def embedding(self, benchmark: str, encoder: str) -> str:
        """An encoder's stage-1 post-projector tokens of one benchmark's sample (HDF5)."""
        return self._under("embeddings", benchmark, f"{encoder}.h5")

    # -- evaluation -------------------------------------------------------------------------
    def eval_result(self, encoder: str, benchmark: str) -> str:
        """lmms-eval's results JSON of one encoder and benchmark (a fixed name)."""
        return self._under("eval", encoder, f"{benchmark}.json")

    def eval_samples(self, encoder: str, benchmark: str) -> str:
        return self._under("eval", encoder, f"{benchmark}.samples.jsonl")

    def eval_task_yaml(self, benchmark: str) -> str:
        """A local benchmark's lmms-eval task folder (its YAML stands for the folder)."""
        return self._under("eval", "tasks", benchmark, f"{benchmark}.yaml")

    # -- law, report, policy ----------------------------------------------------------------
    @property
    def law_dir(self) -> str:
        return self._under("law")

    def law_file(self, name: str) -> str:
        return f"{self.law_dir}/{name}"

    def law_figure(self, name: str) -> str:
        """A per-benchmark law figure, ``name`` = ``<benchmark>.<png|svg|pdf>``."""
        return f"{self.law_dir}/{LAW_FIGURES_DIR}/{name}"

    @property
    def training_curves(self) -> str:
        """The HTML report's training-curves figure."""
        return self._under("report", "training_curves.png")

    @property
    def report_tables(self) -> str:
        """The report's tables and texts as HTML pages (``<category>/<name>.html``)."""
        return self._under("report", "tables")

    @property
    def policy_dir(self) -> str:
        return self._under("policy")

    def policy_round(self, round_index: str | int) -> str:
        """One policy round's decision (JSON)."""
        return f"{self.policy_dir}/rounds/{round_index}.json"

    @property
    def policy_rounds_table(self) -> str:
        """One row per policy round."""
        return f"{self.policy_dir}/{POLICY_ROUNDS_TABLE}"

    @property
    def policy_recommendation(self) -> str:
        return f"{self.policy_dir}/{POLICY_RECOMMENDATION}"

    @property
    def policy_plot(self) -> str:
        """Predicted against measured scores, by round."""
        return f"{self.policy_dir}/{POLICY_PLOT}"

    # -- LMVR -------------------------------------------------------------------------------
    @property
    def lmvr_dir(self) -> str:
        return self._under("lmvr")

    def lmvr_features_dir(self, encoder: str) -> str:
        """``lmvr/features/<encoder>``: the kinds' HDF5 files and the responses."""
        return f"{self.lmvr_dir}/{LMVR_FEATURES}/{encoder}"

    def lmvr_feature(self, encoder: str, kind: str, condition: str) -> str:
        return lmvr_feature_file(self.lmvr_features_dir(encoder), kind, condition)

    def lmvr_responses(self, encoder: str) -> str:
        return f"{self.lmvr_features_dir(encoder)}/{LMVR_RESPONSES}"

    def lmvr_maps(self, encoder: str) -> str:
        """An encoder's token-map PNGs (a folder)."""
        return f"{self.lmvr_dir}/{LMVR_MAPS}/{encoder}"

    @property
    def lmvr_probe(self) -> str:
        return f"{self.lmvr_dir}/{LMVR_PROBE}"


def lmvr_feature_file(features_dir: str | Path, kind: str, condition: str) -> str:
    """``<features_dir>/<kind>/<condition>.h5`` (features_dir: ``lmvr/features/<encoder>``)."""
    if kind not in LMVR_KINDS and not _placeholder(kind):
        raise ValueError(f"kind must be one of {LMVR_KINDS}, not {kind!r}")
    return f"{features_dir}/{kind}/{condition}.h5"

"""Which lmms-eval task and metric stand for each benchmark name of the config.

The config names benchmarks as the paper's table does (``mmbench_en``, ``seed_image`` ...);
lmms-eval names tasks and metrics its own way (``mmbench_en_dev_static``, ``seedbench``,
``seed_image``). This table is the one place that maps the first onto the second, so the
evaluate rule, the results parser and the law all agree on which number is "the score".
Each benchmark is one :class:`Benchmark` record in :data:`BENCHMARKS` holding every fact vislaw
keeps about it (task, metric, alternatives, judge, group size, scale); the dataset a task loads
is lmms-eval's fact and is read from its installed YAML (vislaw.eval.task_data).

A light module (no torch, no lmms-eval): the Snakefile imports it while building the DAG.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from vislaw.config import ConfigError


@dataclass(frozen=True)
class Scale:
    """The range of a benchmark's score as lmms-eval records it, and what it measures.

    The law's figures show scores in these units (accuracy in %, MME in points) and clip
    predicted intervals to ``[low, high]``: a prediction outside what the benchmark can score
    is an artefact of the fit, not a forecast. ``accuracy`` scores are shown in percent
    whatever their recorded range (a fraction of 1 or a percentage).
    """

    name: str
    low: float
    high: float
    accuracy: bool = True

    @property
    def label(self) -> str:
        """The axis label of the score in display units."""
        return f"{self.name} (%)" if self.accuracy else self.name

    @property
    def factor(self) -> float:
        """Recorded value x factor = displayed value (accuracy: percent)."""
        return 100.0 / self.high if self.accuracy else 1.0


ACCURACY = Scale("accuracy", 0.0, 1.0)
ACCURACY_PERCENT = Scale("accuracy", 0.0, 100.0)
MME_PERCEPTION = Scale("MME perception score (points, of 2000)", 0.0, 2000.0, accuracy=False)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its lmms-eval task, the metric that is its score, and where it comes from.

    ``metric`` is the key lmms-eval writes into ``results[task]`` (as ``"<metric>,none"``) and
    the score the law fits; ``extra_metrics`` are kept in the table too (MME's cognition score).
    ``local`` tasks are built from a benchmark set on disk (:mod:`vislaw.eval.local_tasks`) and
    loaded with ``--include_path``; the others are lmms-eval's own task definitions.
    ``alternatives`` are other lmms-eval tasks that report the same metric and may replace
    ``task`` through the config (``eval.tasks``). ``scale``: the metric's range and units as
    lmms-eval records it (None: unknown, e.g. a task added by name; shown as recorded).
    ``judges``: which of its tasks an external model scores, task -> a key of :data:`JUDGES`
    (without the judge their score would be made of failed calls, so the runner reports them
    as not scored instead; docs/evaluation.md). ``group_size``: consecutive documents its
    aggregation scores together (MME: a yes and a no question on one image, both asserted
    present); ``eval.limit`` is rounded up to a multiple so no group is split.
    """

    name: str
    task: str
    metric: str
    extra_metrics: tuple[str, ...] = ()
    local: bool = False
    alternatives: tuple[str, ...] = ()
    scale: Scale | None = None
    judges: Mapping[str, str] = field(default_factory=dict)
    group_size: int = 1

    @property
    def metrics(self) -> tuple[str, ...]:
        return (self.metric, *self.extra_metrics)

    @property
    def judge(self) -> Judge | None:
        """The external judge the task's score needs (None: scored offline by rule)."""
        key = self.judges.get(self.task)
        return JUDGES[key] if key is not None else None


@dataclass(frozen=True)
class Judge:
    """An external model that scores a task's answers: what it needs to be reached.

    ``endpoints`` maps the value of ``API_TYPE`` (lmms-eval's switch, default ``openai``) to
    (variable holding the key, variable that may override the URL, default URL), as the
    task's utils read them."""

    name: str
    endpoints: Mapping[str, tuple[str, str, str]]

    def endpoint(self, environ: Mapping[str, str]) -> tuple[str, str, str]:
        """(key variable, URL variable, default URL) for ``environ``'s ``API_TYPE``; raises
        ValueError for an API type the task's utils do not support."""
        api_type = environ.get("API_TYPE", "openai")
        if api_type not in self.endpoints:
            raise ValueError(f"API_TYPE={api_type!r}: the judge supports {sorted(self.endpoints)}")
        return self.endpoints[api_type]

    @property
    def key_env(self) -> str:
        return self.endpoints["openai"][0]


OPENAI_JUDGE = Judge(
    "OpenAI GPT",
    {
        "openai": (
            "OPENAI_API_KEY",
            "OPENAI_API_URL",
            "https://api.openai.com/v1/chat/completions",
        ),
        "azure": (
            "AZURE_API_KEY",
            "AZURE_ENDPOINT",
            "https://api.cognitive.microsoft.com/sts/v1.0/issueToken",
        ),
    },
)
# The external models a benchmark's ``judges`` may name.
JUDGES: dict[str, Judge] = {"openai": OPENAI_JUDGE}


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        # The paper's column is MMBench-EN dev (its 64.26 for CLIP@336 is 748 of the 1,164
        # circular-evaluated questions) scored by lmms-eval's mmbench_en_dev: rule-based option
        # matching with GPT as fallback, which needs OPENAI_API_KEY and network. The default
        # mmbench_en_dev_static runs the same circular evaluation with rule-based matching only
        # (same metric name, offline); eval.tasks: {mmbench_en: mmbench_en_dev} selects the
        # GPT-judged one (docs/evaluation.md): GPT matches free-form answers to options.
        Benchmark(
            "mmbench_en",
            "mmbench_en_dev_static",
            "gpt_eval_score",
            alternatives=("mmbench_en_dev",),
            scale=ACCURACY_PERCENT,  # lmms-eval's MMBench aggregation reports percent
            judges={"mmbench_en_dev": "openai"},
        ),
        # The paper's MME column is the perception score (1502.7 for CLIP@336).
        Benchmark(
            "mme",
            "mme",
            "mme_perception_score",
            extra_metrics=("mme_cognition_score",),
            scale=MME_PERCEPTION,  # 10 perception subtasks of 200 points each
            group_size=2,  # each image's yes and no question (accuracy and accuracy+)
        ),
        Benchmark("mmmu_val", "mmmu_val", "mmmu_acc", scale=ACCURACY),
        Benchmark("ok_vqa", "ok_vqa_val2014", "exact_match", scale=ACCURACY),
        Benchmark("textvqa_val", "textvqa_val", "exact_match", scale=ACCURACY),
        Benchmark("vizwiz_vqa_val", "vizwiz_vqa_val", "exact_match", scale=ACCURACY),
        Benchmark("scienceqa_img", "scienceqa_img", "exact_match", scale=ACCURACY),
        Benchmark("seed_image", "seedbench", "seed_image", scale=ACCURACY),
        # The demo's synthetic sets (vislaw.data.synthetic): answerable only from the image.
        Benchmark("synth_color", "synth_color", "acc", local=True, scale=ACCURACY),
        Benchmark("synth_shape", "synth_shape", "acc", local=True, scale=ACCURACY),
        Benchmark("synth_position", "synth_position", "acc", local=True, scale=ACCURACY),
        Benchmark("synth_count", "synth_count", "acc", local=True, scale=ACCURACY),
    )
}


# The score of an lmms-eval task added by name (not one of the paper's) is the first metric of
# its YAML's metric_list, except where that first metric is a part and not the whole: MMStar
# lists its six categories before their ``average``. ``eval.metrics`` picks another one.
DEFAULT_METRICS: dict[str, str] = {"mmstar": "average"}


def task_metrics(task: str) -> list[str]:
    """The metrics the installed lmms-eval ``task`` reports (its merged YAML's metric_list).
    Raises KeyError for a task lmms-eval does not have (a group such as ``blink`` included:
    its subtasks are the tasks)."""
    from vislaw.eval.task_data import read_task_yaml, task_yaml

    config = read_task_yaml(task_yaml(task))
    return [str(m["metric"]) for m in config.get("metric_list") or [] if "metric" in m]


def lmms_task_benchmark(
    name: str, task: str, metric: str | None = None, key: str = "benchmarks"
) -> Benchmark:
    """Benchmark ``name`` scored by the installed lmms-eval ``task`` and its ``metric``
    (default: :data:`DEFAULT_METRICS`, else the task's first metric). Read from the task YAML
    without importing lmms-eval, so a typo is refused when the config is checked, not after
    training. Raises ConfigError naming ``key`` (the benchmark's entry) or
    ``eval.tasks.<name>`` (no such task) or ``eval.metrics.<name>`` (a metric the task does
    not report)."""
    key = key if task == name else f"eval.tasks.{name}"
    try:
        metrics = task_metrics(task)
    except (KeyError, ModuleNotFoundError) as exc:
        raise ConfigError(
            key,
            f"unknown benchmark {task!r}: neither a paper benchmark ({sorted(BENCHMARKS)}) nor an installed "
            f"lmms-eval task ({exc})",
        ) from None
    if not metrics:
        raise ConfigError(key, f"lmms-eval task {task!r} lists no metric in its metric_list")
    if metric is None:
        metric = DEFAULT_METRICS.get(task, metrics[0])
    if metric not in metrics:
        raise ConfigError(f"eval.metrics.{name}", f"{metric!r}: task {task!r} reports {metrics}")
    # A paper benchmark's task added under another name keeps that record's judge and groups.
    owner = next((b for b in BENCHMARKS.values() if task in (b.task, *b.alternatives)), None)
    if owner is None:
        return Benchmark(name, task, metric)
    judges = {task: owner.judges[task]} if task in owner.judges else {}
    return Benchmark(name, task, metric, judges=judges, group_size=owner.group_size)


def get_benchmark(
    name: str,
    task_overrides: Mapping[str, str] | None = None,
    metric_overrides: Mapping[str, str] | None = None,
    key: str = "benchmarks",
) -> Benchmark:
    """The benchmark called ``name``, with its task replaced when ``task_overrides`` says so.

    A paper benchmark keeps its metric and may only switch to one of its ``alternatives``
    (another task would report a different metric). Any other name is an installed lmms-eval
    task: ``name`` itself, or ``task_overrides[name]``, scored by ``metric_overrides[name]``
    or its default (:func:`lmms_task_benchmark`). Raises ConfigError naming the key
    (``key``: the config entry that named the benchmark).
    """
    task = (task_overrides or {}).get(name)
    metric = (metric_overrides or {}).get(name)
    bench = BENCHMARKS.get(name)
    if bench is None:
        return lmms_task_benchmark(name, task or name, metric, key)
    if metric is not None and metric != bench.metric:
        raise ConfigError(
            f"eval.metrics.{name}", f"the paper benchmark {name!r} is scored by {bench.metric!r}"
        )
    if task is None or task == bench.task:
        return bench
    if task not in bench.alternatives:
        allowed = [bench.task, *bench.alternatives]
        raise ConfigError(f"eval.tasks.{name}", f"{task!r} is not one of {allowed}")
    return replace(bench, task=task, alternatives=())


def resolve_benchmarks(config: Mapping) -> list[Benchmark]:
    """The checked config's benchmarks in config order, task and metric overrides
    (``eval.tasks``, ``eval.metrics``) applied."""
    from vislaw.eval.settings import EvalSettings

    settings = EvalSettings.from_config(config)
    names: Iterable[str] = config["benchmarks"]
    for key, overrides in (("eval.tasks", settings.tasks), ("eval.metrics", settings.metrics)):
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(key, f"overrides benchmarks not in `benchmarks`: {unknown}")
    return [
        get_benchmark(name, settings.tasks, settings.metrics, f"benchmarks.{i}")
        for i, name in enumerate(names)
    ]

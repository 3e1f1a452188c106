"""Figures of the law: one figure per benchmark, an overview of all, and a summary of fit and policy.

``benchmark_figure``: the AC-quadratic surface over the encoders' (A, C) with the encoders as
labelled points (filled with their measured score on the same colour scale, so a point that
stands out from the surface is a point the law misses), beside predicted-vs-measured with the
in-sample and leave-one-out predictions. In the benchmark's own units by default (accuracy in
%, MME points; vislaw.eval.tasks records them), normalised on request (``law.figure_units``).
``law_figure``: the same panels for every benchmark in one figure (law.png).
``overview_figure``: R² of every model per benchmark, and Recall@k against the finetuning budget
for the AC policy and a random order.

Why the care with text: these figures go into papers and slides as they are, so labels are
placed from the renderer's own extents (:func:`place_labels`), never on top of another text,
and the axes show the data, not the outliers: held-out predictions beyond them are drawn as
arrows at the edge and counted in the caption.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure, SubFigure  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from vislaw.eval.tasks import Scale  # noqa: E402
from vislaw.io.atomic import atomic_path  # noqa: E402
from vislaw.law.fit import LAW_MODEL, BenchmarkFit, fit_statement, predict, underdetermined  # noqa: E402
from vislaw.layout import LAW_FIGURE_FORMATS, LAW_FIGURES_DIR  # noqa: E402

GRID = 101
CMAP = "viridis"
_RADII = (5, 9, 14, 20, 28, 38)  # label distances from its point tried in turn (points)
_ANGLES = np.deg2rad(np.arange(0, 360, 30))


# --- units -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """How one benchmark's numbers are shown: normalised (the fit's own units) or raw (A and
    C as measured, the score in the benchmark's units, ``scale``; None: as recorded)."""

    fit: BenchmarkFit
    scale: Scale | None = None
    normalised: bool = False

    def _span(self, column: str) -> tuple[float, float]:
        values = self.fit.raw[column].to_numpy(dtype=float)
        return float(values.min()), float(values.max())

    def a(self, norm: np.ndarray) -> np.ndarray:
        low, high = (0.0, 1.0) if self.normalised else self._span("A")
        return low + np.asarray(norm) * (high - low)

    def c(self, norm: np.ndarray) -> np.ndarray:
        low, high = (0.0, 1.0) if self.normalised else self._span("C")
        return low + np.asarray(norm) * (high - low)

    def score(self, norm: np.ndarray) -> np.ndarray:
        """Normalised score -> displayed score (the fit is affine-invariant, so this is exact)."""
        if self.normalised:
            return np.asarray(norm, dtype=float)
        low, high = self._span("score")
        factor = self.scale.factor if self.scale is not None else 1.0
        return (low + np.asarray(norm, dtype=float) * (high - low)) * factor

    @property
    def bounds(self) -> tuple[float, float] | None:
        """What the benchmark can score, in displayed units (None: no known bound)."""
        if self.normalised or self.scale is None:
            return None
        return self.scale.low * self.scale.factor, self.scale.high * self.scale.factor

    def clip(self, values: np.ndarray) -> np.ndarray:
        bounds = self.bounds
        return np.asarray(values) if bounds is None else np.clip(values, *bounds)

    @property
    def score_label(self) -> str:
        if self.normalised:
            return "score (normalised)"
        return self.scale.label if self.scale is not None else "score (as recorded)"

    @property
    def a_label(self) -> str:
        return "A (alignment, normalised)" if self.normalised else "A (alignment score)"

    @property
    def c_label(self) -> str:
        return "C (correspondence, normalised)" if self.normalised else "C (PCK@0.10 × 100)"


# --- text placement ----------------------------------------------------------------------------


@contextmanager
def _recording_texts() -> Iterator[list[Text]]:
    """The texts drawn while the context is open, in drawing order. Only what the renderer
    draws counts: tick labels outside the view limits exist as artists but are never drawn."""
    drawn: list[Text] = []
    original = Text.draw

    def draw(self: Text, renderer) -> None:
        drawn.append(self)
        original(self, renderer)

    Text.draw = draw  # type: ignore[method-assign]
    try:
        yield drawn
    finally:
        Text.draw = original  # type: ignore[method-assign]


def text_boxes(fig: Figure) -> list[tuple[Text, Bbox]]:
    """Every text the renderer draws on ``fig`` (tick labels, titles, axis labels,
    annotations, legends, colour-bar labels) with its extent on the canvas."""
    with _recording_texts() as drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = []
    for text in dict.fromkeys(drawn):
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text, box))
    return boxes


def overlapping_texts(fig: Figure, pad: float = 0.0) -> list[tuple[str, str]]:
    """Pairs of texts whose boxes (grown by ``pad`` pixels) overlap; empty for a clean figure."""
    boxes = text_boxes(fig)
    pairs = []
    for i, (t1, b1) in enumerate(boxes):
        g1 = b1.expanded(1, 1).padded(pad)
        for t2, b2 in boxes[i + 1 :]:
            if g1.overlaps(b2.padded(pad)) and _area(g1, b2) > 0:
                pairs.append((t1.get_text(), t2.get_text()))
    return pairs


def _area(a: Bbox, b: Bbox) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


def _collision(box: Bbox, obstacles: Sequence[Bbox]) -> float:
    return sum(_area(box, o) for o in obstacles)


def place_labels(
    ax,
    xs: Sequence[float],
    ys: Sequence[float],
    names: Sequence[str],
    taken: list[Bbox],
    avoid: np.ndarray | None = None,
) -> None:
    """Label each point without overlap, from the renderer's extents: every label tries
    distances ``_RADII`` x directions ``_ANGLES`` and takes the first spot inside the axes
    that touches no box of ``taken`` (display space: the figure's texts, legends, labels
    placed so far; each new label is appended) nor a marker (the labelled points and the
    data points ``avoid``, an (n, 2) array); far spots get a leader line.
    Call after the figure's layout is final (see freeze_layout)."""
    fig = ax.figure.get_figure(root=True)
    renderer = fig.canvas.get_renderer()
    inside = ax.get_window_extent(renderer).padded(-2)
    pixels = ax.transData.transform(np.column_stack([xs, ys]).reshape(-1, 2))
    others = ax.transData.transform(avoid) if avoid is not None and len(avoid) else pixels[:0]
    marker = 4.5 * fig.dpi / 72
    markers = [
        Bbox.from_extents(x - marker, y - marker, x + marker, y + marker)
        for x, y in np.concatenate([pixels, others])
    ]
    order = np.argsort(-pixels[:, 1], kind="stable")
    for i in order:
        label = ax.annotate(
            names[i], (xs[i], ys[i]), xytext=(0, 0), textcoords="offset points", fontsize=7,
            zorder=5, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        )  # fmt: skip
        best, best_cost = None, np.inf
        for radius in _RADII:
            for angle in _ANGLES:
                dx, dy = radius * np.cos(angle), radius * np.sin(angle)
                label.xyann = (dx, dy)
                label.set_ha("left" if dx > 1 else ("right" if dx < -1 else "center"))
                label.set_va("bottom" if dy > 1 else ("top" if dy < -1 else "center"))
                box = label.get_window_extent(renderer).padded(1.5)
                cost = (
                    _collision(box, taken)
                    + _collision(box, markers)
                    + (0 if _contains(inside, box) else 1e6)
                )
                if cost < best_cost:
                    best, best_cost = (dx, dy, label.get_ha(), label.get_va()), cost
                if cost == 0:
                    break
            if best_cost == 0:
                break
        dx, dy, ha, va = best
        label.xyann = (dx, dy)
        label.set_ha(ha)
        label.set_va(va)
        if np.hypot(dx, dy) > _RADII[1] + 1:
            label.arrow_patch = None
            ax.annotate(
                "", (xs[i], ys[i]), xytext=(dx, dy), textcoords="offset points",
                arrowprops={"arrowstyle": "-", "color": "0.4", "lw": 0.5, "shrinkB": 3},
            )  # fmt: skip
        taken.append(label.get_window_extent(renderer).padded(1.5))


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return (
        inner.x0 >= outer.x0
        and inner.x1 <= outer.x1
        and inner.y0 >= outer.y0
        and inner.y1 <= outer.y1
    )


def freeze_layout(fig: Figure) -> None:
    """Run the layout engine once and keep its result: labels placed afterwards from pixel
    extents stay where they were placed (a later layout pass would move the axes under them).
    Subfigures have no engine of their own: the figure's lays them out."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


# --- panels ------------------------------------------------------------------------------------


def surface_panel(ax, view: View):
    """Contours of the fitted law over the encoders' (A, C) range, encoders on top, the law's
    maximum as a star; returns the mappable. Labels come later (place_labels)."""
    fit = view.fit
    grid = np.linspace(-0.06, 1.06, GRID)  # a margin, so edge points are not cut in half
    ga, gc = np.meshgrid(grid, grid)
    norm = predict(LAW_MODEL, fit.law.coef, ga.ravel(), gc.ravel()).reshape(ga.shape)
    surface = view.clip(view.score(norm))
    measured = view.score(fit.y)
    low = min(float(surface.min()), float(measured.min()))
    high = max(float(surface.max()), float(measured.max()))
    levels = np.linspace(low, high, 21) if high > low else np.linspace(low - 1, high + 1, 21)
    xa, yc = view.a(ga), view.c(gc)
    filled = ax.contourf(xa, yc, surface, levels=levels, cmap=CMAP)
    ax.contour(xa, yc, surface, levels=levels[::4], colors="white", linewidths=0.6)
    ax.scatter(
        view.a(fit.a), view.c(fit.c), c=measured, cmap=CMAP, vmin=levels[0], vmax=levels[-1],
        s=55, edgecolors="black", linewidths=1.0, zorder=3,
    )  # fmt: skip
    inside = (ga >= 0) & (ga <= 1) & (gc >= 0) & (gc <= 1)  # the data's range, not the margin
    peak = np.unravel_index(np.argmax(np.where(inside, surface, -np.inf)), surface.shape)
    ax.scatter(xa[peak], yc[peak], marker="*", s=160, color="white", edgecolors="black", zorder=3)
    ax.set_xlabel(view.a_label)
    ax.set_ylabel(view.c_label)
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(6))
    ax.set_title("fitted surface, encoders filled with their score", fontsize=9)
    return filled


def _edge_markers(ax, xs: np.ndarray, ys: np.ndarray, low: float, high: float) -> int:
    """Held-out predictions beyond the axis: a red arrow at the edge instead of a stretched
    axis; returns how many there are."""
    above, below = ys > high, ys < low
    pad = 0.015 * (high - low)
    ax.scatter(xs[above], np.full(above.sum(), high - pad), marker="^", color="tab:red", s=36,
               zorder=4, clip_on=False)  # fmt: skip
    ax.scatter(xs[below], np.full(below.sum(), low + pad), marker="v", color="tab:red", s=36,
               zorder=4, clip_on=False)  # fmt: skip
    return int(above.sum() + below.sum())


def scatter_panel(ax, view: View) -> int:
    """Predicted vs measured in displayed units: in-sample fit (filled) and held-out (open).
    The axes span the measured and fitted scores; held-out predictions beyond them are drawn
    at the edge (returns their count). Predictions are clipped to the benchmark's range."""
    fit, law = view.fit, view.fit.law
    measured = view.score(fit.y)
    fitted = view.clip(view.score(law.fitted))
    loo = view.clip(view.score(law.loo))
    values = np.concatenate([measured, fitted])
    span = float(np.ptp(values)) or 1.0
    low, high = values.min() - 0.08 * span, values.max() + 0.08 * span
    if view.bounds is not None:
        low, high = max(low, view.bounds[0]), min(high, view.bounds[1])
    ax.plot([low, high], [low, high], ls="--", color="grey", lw=0.8)
    shown = underdetermined(len(fit.y))
    ax.scatter(measured, fitted, s=28, color="tab:blue", label="in-sample fit", zorder=3)
    finite = np.isfinite(loo)
    inside = finite & (loo >= low) & (loo <= high)
    if finite.any():
        ax.scatter(measured[inside], loo[inside], s=28, facecolors="none", edgecolors="tab:red",
                   label="leave-one-out", zorder=3)  # fmt: skip
    outside = _edge_markers(ax, measured[finite], loo[finite], low, high)
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.xaxis.set_major_locator(MaxNLocator(5))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    ax.set_xlabel(f"measured {view.score_label}")
    ax.set_ylabel(f"predicted {view.score_label}")
    ax.set_title("predicted vs measured" + (" (interpolates)" if shown else ""), fontsize=9)
    ax.legend(fontsize=7, loc="upper left", frameon=True)
    return outside


def _worst(view: View, count: int = 2) -> list[int]:
    """The encoders with the largest held-out misses, named in the scatter panel."""
    loo = view.fit.law.loo
    if not np.isfinite(loo).all():
        return []
    miss = np.abs(loo - view.fit.y)
    return [int(i) for i in np.argsort(-miss)[:count] if miss[i] > 0.15]


def caption(view: View, outside: int) -> str:
    """What the figure shows, its fit statement and what was clipped or left at the edge."""
    fit = view.fit
    parts = [
        fit_statement(len(fit.y), fit.law.r2, fit.law.loo_r2) + ".",
        "Left: the law score ~ [1, A, C, A², AC, C²] (☆ its maximum).",
        "Right: fitted (filled) and leave-one-out (open) predictions.",
    ]
    if view.bounds is not None:
        low, high = view.bounds
        parts.append(
            f"Surface and predictions clipped to the benchmark's range [{low:g}, {high:g}]."
        )
    if outside:
        parts.append(f"▲▼ at the edge: {outside} held-out prediction(s) beyond the axes.")
    return "\n".join(textwrap.wrap(" ".join(parts), 95))


def draw_benchmark(fig: Figure | SubFigure, view: View, title_size: float = 11) -> list:
    """Both panels of one benchmark into ``fig`` (a figure or a subfigure); returns the label
    jobs (axes, xs, ys, names, other points to avoid) for place_labels once the layout is final."""
    left, right = fig.subplots(1, 2)
    mappable = surface_panel(left, view)
    bar = fig.colorbar(mappable, ax=left, fraction=0.046, pad=0.02, ticks=MaxNLocator(6))
    bar.set_label(view.score_label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    outside = scatter_panel(right, view)
    fig.suptitle(f"{view.fit.benchmark}: {view.score_label}", fontsize=title_size)
    fig.supxlabel(caption(view, outside), fontsize=7)
    fit = view.fit
    worst = _worst(view)
    loo = view.clip(view.score(fit.law.loo))
    measured, fitted = view.score(fit.y), view.clip(view.score(fit.law.fitted))
    finite = np.isfinite(loo)
    points = np.concatenate(
        [np.column_stack([measured, fitted]), np.column_stack([measured, loo])[finite]]
    )
    return [
        (left, view.a(fit.a), view.c(fit.c), list(fit.encoders), None),
        (right, measured[worst], loo[worst], [fit.encoders[i] for i in worst], points),
    ]


def _place_all(fig: Figure, jobs: list) -> None:
    """Freeze the layout, then place every job's labels around the figure's drawn texts and
    legends (one draw for the whole figure)."""
    freeze_layout(fig)
    renderer = fig.canvas.get_renderer()
    taken = [box for _, box in text_boxes(fig)]
    taken += [ax.get_legend().get_window_extent(renderer) for ax, *_ in jobs if ax.get_legend()]
    for ax, xs, ys, names, avoid in jobs:
        low, high = ax.get_ylim()
        keep = [i for i, y in enumerate(ys) if low <= y <= high]
        place_labels(ax, [xs[i] for i in keep], [ys[i] for i in keep],
                     [names[i] for i in keep], taken, avoid)  # fmt: skip


def benchmark_figure(view: View) -> Figure:
    """One benchmark's figure (for a slide or a paper): surface, predicted vs measured and
    a caption with the fit statement."""
    fig = plt.figure(figsize=(10, 5.0), layout="constrained")
    _place_all(fig, draw_benchmark(fig, view))
    return fig


def law_figure(views: Sequence[View], pairs_per_row: int = 2) -> Figure:
    """Every benchmark's panels, ``pairs_per_row`` benchmarks per row, each in its own
    subfigure so its title sits above its own panels, clear of the row above."""
    n = len(views)
    rows, cols = max(1, -(-n // pairs_per_row)), min(n, pairs_per_row)
    fig = plt.figure(figsize=(10 * cols, 5.2 * rows + 0.8), layout="constrained")
    subs = np.atleast_1d(fig.subfigures(rows, cols, squeeze=False).ravel())
    jobs = []
    for sub, view in zip(subs, views, strict=False):
        jobs += draw_benchmark(sub, view, title_size=12)
    fig.suptitle(
        "The AC law per benchmark: score ~ [1, A, C, A², AC, C²], fitted on min-max normalised "
        "A, C and score",
        fontsize=14,
    )
    _place_all(fig, jobs)
    return fig


_R2_BARS = [
    ("r2_a_quadratic", "A quadratic", "tab:orange"),
    ("r2_c_quadratic", "C quadratic", "tab:green"),
    ("r2_ac_linear", "AC linear", "tab:purple"),
    ("r2_ac_quadratic", "AC quadratic (the law)", "tab:blue"),
    ("loo_r2_ac_quadratic", "AC quadratic, leave-one-out", "tab:red"),
    ("r2_random_quadratic", "random inputs, quadratic", "grey"),
]


def overview_figure(r2: pd.DataFrame, curves: pd.DataFrame | None = None, k: int = 3) -> Figure:
    """R² per benchmark and model (``r2.csv``), and mean Recall@k per budget (``curves``)."""
    panels = 2 if curves is not None and len(curves) else 1
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(7.5 + 5 * (panels - 1), 5.0),
        layout="constrained",
        squeeze=False,
        gridspec_kw={"width_ratios": [1.6, 1][:panels]},
    )
    ax = axes[0][0]
    labels = list(r2["benchmark"])
    x = np.arange(len(labels))
    width = 0.8 / len(_R2_BARS)
    for i, (column, name, color) in enumerate(_R2_BARS):
        ax.bar(
            x + (i - len(_R2_BARS) / 2 + 0.5) * width, r2[column], width, label=name, color=color
        )
    ax.axhline(0, color="black", lw=0.6)
    # vertical: slanted names' boxes overlap their neighbours' (tests/unit/law/test_law_figures.py)
    ax.set_xticks(x, labels, rotation=90, fontsize=8)
    ax.set_ylim(min(0.0, float(np.nanmin(r2[[c for c, _, _ in _R2_BARS]].to_numpy())) - 0.05), 1.0)
    ax.set_ylabel("R²")
    ax.set_title("How well each model explains the benchmark scores", fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, ncol=3, loc="outside lower left")
    if panels == 2:
        ax = axes[0][1]
        for strategy, color, name in (
            ("ac", "tab:blue", "AC policy"),
            ("random", "grey", "random"),
        ):
            part = curves[curves["strategy"] == strategy]
            for _, per in part.groupby("benchmark"):
                ax.plot(per["budget"], per["recall_at_k"], color=color, alpha=0.2, lw=0.8)
            mean = part.groupby("budget")["recall_at_k"].mean()
            ax.plot(mean.index, mean.to_numpy(), color=color, lw=2, marker="o", ms=3, label=name)
        ax.set_xlabel("encoders finetuned (budget)")
        ax.set_ylabel(f"Recall@{k}")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Best encoder in the top-{k} (thin: per benchmark)", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Save atomically; the format follows the target's suffix (png, svg, pdf)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=dpi)
    return path


def views_for(
    fits: Mapping[str, BenchmarkFit], scales: Mapping[str, Scale | None], normalised: bool
) -> list[View]:
    """One view per fit: ``scales[benchmark]`` its units (missing: as recorded)."""
    return [View(fit, scales.get(name), normalised) for name, fit in fits.items()]


def benchmark_figure_paths(out_dir: str | Path, benchmark: str) -> list[Path]:
    """``<out_dir>/<benchmark>.png|svg|pdf``: PNG for slides, SVG and PDF for papers."""
    return [Path(out_dir) / f"{benchmark}.{fmt}" for fmt in LAW_FIGURE_FORMATS]


def write_benchmark_figures(views: Sequence[View], out_dir: str | Path) -> list[Path]:
    """Every benchmark's figure in every format of LAW_FIGURE_FORMATS; returns the paths."""
    paths = []
    for view in views:
        fig = benchmark_figure(view)
        for path in benchmark_figure_paths(out_dir, view.fit.benchmark):
            paths.append(save_figure(fig, path, dpi=150))
        plt.close(fig)
    return paths


def write_missing_figures(benchmarks: Sequence[str], out_dir: str | Path) -> dict[str, Path]:
    """A figure that says so for each configured benchmark no encoder scored (the rule
    declares every benchmark's figures; an absent file would fail the run after the fit)."""
    paths = {}
    for name in benchmarks:
        fig = plt.figure(figsize=(6, 2), layout="constrained")
        fig.text(0.5, 0.5, f"{name}: not scored by any encoder (see benchmarks.csv)",
                 ha="center", va="center", fontsize=10)  # fmt: skip
        for path in benchmark_figure_paths(Path(out_dir) / LAW_FIGURES_DIR, name):
            paths[f"{LAW_FIGURES_DIR}/{path.name}"] = save_figure(fig, path)
        plt.close(fig)
    return paths

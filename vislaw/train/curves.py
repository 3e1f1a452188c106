"""Training curves: every encoder's stage-1 and stage-2 loss from the stage folders' loss.csv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from vislaw.io.provenance import read_numeric_csv

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def line_styles(encoders: Sequence[str]) -> dict[str, dict[str, str]]:
    """A distinct (colour, line style) per encoder: the 20 colours of tab20 (10 hues, dark and
    light), then the same colours dashed, dotted and dash-dotted, so 80 encoders never share a
    look (a 10-colour cycle repeats at the 11th: the demo has 17 encoders)."""
    from matplotlib import colormaps

    colours = colormaps["tab20"].colors
    dashes = ("-", "--", ":", "-.")
    return {
        name: {
            "color": colours[i % len(colours)],
            "linestyle": dashes[(i // len(colours)) % len(dashes)],
        }
        for i, name in enumerate(encoders)
    }


def training_curves_figure(stage_dirs: Mapping[str, Mapping[int, str | Path]]) -> Figure:
    """One panel per stage, one line per encoder; ``stage_dirs[encoder][stage]`` is a folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = sorted({s for dirs in stage_dirs.values() for s in dirs})
    styles = line_styles(list(stage_dirs))
    fig, axes = plt.subplots(
        1, len(stages), figsize=(5.5 * len(stages) + 2, 4), squeeze=False, layout="constrained"
    )
    for ax, stage in zip(axes[0], stages, strict=True):
        for encoder, dirs in stage_dirs.items():
            if stage not in dirs:
                continue
            # numbers or a refusal naming the file and line: a word in the column would
            # otherwise turn the axis into categories and plot with rc 0
            log = read_numeric_csv(Path(dirs[stage]) / "loss.csv", ("step", "loss"))
            ax.plot(log["step"], log["loss"], label=encoder, linewidth=1.2, **styles[encoder])
        ax.set_title(f"stage {stage}: training loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    # one legend for all panels, outside the data (right of the last panel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles, strict=True))
    for ax in axes[0][1:]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    fig.legend(seen.values(), seen.keys(), fontsize=7, loc="outside right upper")
    return fig


def plot_training_curves(
    stage_dirs: Mapping[str, Mapping[int, str | Path]], out_path: str | Path
) -> None:
    """:func:`training_curves_figure` saved atomically to ``out_path``."""
    import matplotlib.pyplot as plt

    from vislaw.io.atomic import atomic_path

    fig = training_curves_figure(stage_dirs)
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format=Path(out_path).suffix.lstrip("."), dpi=110)
    plt.close(fig)


def run_training_curves(stage_infos: Sequence[str | Path], out_path: str | Path) -> Path:
    """Step ``training_curves``: plot the stage folders of ``stage_infos`` (each
    ``<run>/stage<k>/<encoder>/vlm.json``) into ``out_path``."""
    dirs: dict[str, dict[int, Path]] = {}
    for info in map(Path, stage_infos):
        stage = int(info.parents[1].name.removeprefix("stage"))
        dirs.setdefault(info.parent.name, {})[stage] = info.parent
    plot_training_curves(dirs, out_path)
    return Path(out_path)

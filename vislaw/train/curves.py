"""Training curves: every encoder's stage-1 and stage-2 loss from the stage folders' loss.csv."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from vislaw.io.provenance import read_numeric_csv


def plot_training_curves(
    stage_dirs: Mapping[str, Mapping[int, str | Path]], out_path: str | Path
) -> None:
    """One panel per stage, one line per encoder; ``stage_dirs[encoder][stage]`` is a folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vislaw.io.atomic import atomic_path

    stages = sorted({s for dirs in stage_dirs.values() for s in dirs})
    fig, axes = plt.subplots(1, len(stages), figsize=(5.5 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages, strict=True):
        for encoder, dirs in stage_dirs.items():
            if stage not in dirs:
                continue
            # numbers or a refusal naming the file and line: a word in the column would
            # otherwise turn the axis into categories and plot with rc 0
            log = read_numeric_csv(Path(dirs[stage]) / "loss.csv", ("step", "loss"))
            ax.plot(log["step"], log["loss"], label=encoder, linewidth=1.2)
        ax.set_title(f"stage {stage}: training loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
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

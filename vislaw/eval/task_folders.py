"""Where an lmms-eval task's YAML goes: ``<tasks_root>/<name>/<name>.yaml``.

``lmms-eval --include_path <tasks_root>`` indexes every YAML below the folder; both kinds of
task folders vislaw writes (local benchmark sets, vislaw.eval.local_tasks; copies of installed
tasks, vislaw.eval.task_copies) use this layout and this writer, so a half-written YAML is
never indexed (atomic write) and the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from vislaw.io.atomic import write_text_atomic


def task_yaml_path(tasks_root: str | Path, name: str) -> Path:
    """``<tasks_root>/<name>/<name>.yaml``."""
    return Path(tasks_root) / name / f"{name}.yaml"


def write_task_yaml(tasks_root: str | Path, name: str, text: str) -> Path:
    """Write the task's YAML text atomically (folder created); returns its path."""
    path = task_yaml_path(tasks_root, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)
    return path

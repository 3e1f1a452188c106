"""lmms-eval's installed-task index, kept on disk between jobs (vislaw/eval/task_index.py).

Every evaluate job used to parse lmms-eval's ~2,000 task YAMLs again (found profiling the
rehearsal). The cache must give lmms-eval's own index, never a stale or planted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vislaw.eval import task_index

TASK = "task: {name}\ndataset_path: lmms-lab-encoder/{name}\noutput_type: generate_until\n"


def _tasks(folder: Path, names: list[str]) -> Path:
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / f"{name}.yaml").write_text(TASK.format(name=name))
    return folder


def _lmms_index(folder: Path):
    """lmms-eval's own indexing of ``folder`` (what the cache stands in for)."""
    from lmms_eval.tasks import TaskManager

    return lambda: TaskManager(include_path=str(folder), include_defaults=False).task_index


def _never():
    raise AssertionError("the index was built again")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv(task_index.CACHE_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(task_index, "_memo", {})


def test_installed_index_equals_lmms_evals_and_is_read_back_without_indexing():
    from lmms_eval.tasks import TaskManager

    from vislaw.eval.lmms_bridge import task_manager

    first = task_manager(["mme"]).task_index
    assert first == TaskManager().task_index  # lmms-eval's own index of its installed tasks
    (stored,) = task_index.cache_dir().glob("lmms_eval_tasks-*.json")
    assert json.loads(stored.read_text()) == first
    task_index._memo.clear()  # a new job: only the disk cache is left
    tasks_dir = Path(__import__("lmms_eval.tasks").tasks.__file__).resolve().parent
    from importlib.metadata import version

    assert task_index.installed_task_index(tasks_dir, version("lmms_eval"), _never) == first


def test_a_changed_added_or_removed_task_file_gives_a_fresh_index(tmp_path):
    folder = _tasks(tmp_path / "tasks", ["alpha", "beta"])
    build = _lmms_index(folder)
    before = task_index.installed_task_index(folder, "1", build)
    assert set(before) == {"alpha", "beta"}
    task_index._memo.clear()
    (folder / "beta" / "beta.yaml").write_text(TASK.format(name="gamma"))  # renamed inside
    os.utime(folder / "beta" / "beta.yaml", ns=(1, 1))
    assert set(task_index.installed_task_index(folder, "1", build)) == {"alpha", "gamma"}
    _tasks(folder, ["delta"])
    assert "delta" in task_index.installed_task_index(folder, "1", build)
    (folder / "alpha" / "alpha.yaml").unlink()
    assert "alpha" not in task_index.installed_task_index(folder, "1", build)


def test_another_lmms_eval_version_does_not_read_the_old_index(tmp_path):
    folder = _tasks(tmp_path / "tasks", ["alpha"])
    task_index.installed_task_index(folder, "0.7.3", _lmms_index(folder))
    with pytest.raises(AssertionError, match="built again"):
        task_index.installed_task_index(folder, "0.8.0", _never)


def test_a_planted_or_corrupt_cache_file_is_rebuilt(tmp_path):
    """An index naming a file outside the task folder (a planted YAML with !function code) or
    a truncated file is not used: lmms-eval's index is built and stored over it."""
    folder = _tasks(tmp_path / "tasks", ["alpha"])
    good = task_index.installed_task_index(folder, "1", _lmms_index(folder))
    (stored,) = task_index.cache_dir().glob("*.json")
    planted = tmp_path / "evil.yaml"
    planted.write_text(TASK.format(name="alpha"))
    for text in (
        json.dumps({"alpha": {"type": "task", "yaml_path": str(planted)}}),
        json.dumps(["alpha"]),
        '{"alpha": {"type": "task", "yaml_pa',
    ):
        stored.write_text(text)
        task_index._memo.clear()
        assert task_index.installed_task_index(folder, "1", _lmms_index(folder)) == good
        assert json.loads(stored.read_text()) == good


def test_callers_get_their_own_copy(tmp_path):
    """task_manager extends the index with the run's local tasks: that may not leak into the
    next caller's index."""
    folder = _tasks(tmp_path / "tasks", ["alpha"])
    first = task_index.installed_task_index(folder, "1", _lmms_index(folder))
    first["local_copy"] = {"type": "task", "yaml_path": "/elsewhere.yaml"}
    assert "local_copy" not in task_index.installed_task_index(folder, "1", _never)


def test_an_unwritable_cache_folder_still_gives_the_index(tmp_path, monkeypatch, capsys):
    """A cache folder that cannot be made (a file in its place: fails even as root)."""
    folder = _tasks(tmp_path / "tasks", ["alpha"])
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv(task_index.CACHE_VAR, str(tmp_path / "not-a-folder" / "vislaw"))
    assert set(task_index.installed_task_index(folder, "1", _lmms_index(folder))) == {"alpha"}
    assert "not cached" in capsys.readouterr().out

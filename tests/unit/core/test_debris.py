"""A SIGKILLed writer's temporaries are removed by the next write of the same output
(issue 16, class 6), and only when their writer is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.paths import ROOT
from vislaw.io.atomic import atomic_dir, remove_stale_temporaries
from vislaw.io.hdf5 import read_features, write_features

WRITER = """
import sys, time
import numpy as np
import pytest
from vislaw.io.hdf5 import write_features

with write_features(sys.argv[1], 4, 2, 3, dtype="float32") as writer:
    writer.append(["a", "b"], np.ones((2, 2, 3), np.float32))
    print("half", flush=True)
    time.sleep(60)  # SIGKILLed here: no finally block runs
"""


def _killed_writer(target: Path) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return proc.pid


def test_next_write_removes_a_killed_writers_temporary(tmp_path):
    target = tmp_path / "features" / "clip224.h5"
    pid = _killed_writer(target)
    stale = target.with_name(f".clip224.h5.tmp-{pid}")
    assert stale.is_file() and not target.exists()  # the debris the issue found
    with write_features(target, 2, 2, 3, dtype="float32") as writer:
        writer.append(["x", "y"], np.zeros((2, 2, 3), np.float32))
    assert not stale.exists()
    assert read_features(target).ids == ["x", "y"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["clip224.h5"]


def test_live_writers_and_other_outputs_are_left_alone(tmp_path):
    target = tmp_path / "a.h5"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".a.h5.tmp-{sleeper.pid}"
        mine = tmp_path / f".a.h5.tmp-{os.getpid()}"
        other = tmp_path / ".b.h5.tmp-999999999"  # another output's: not this rule's to clean
        dead_dir = tmp_path / ".a.h5.old-999999999"
        for path in (live, mine, other):
            path.write_text("x")
        dead_dir.mkdir()
        (dead_dir / "f").write_text("x")
        removed = remove_stale_temporaries(target)
        assert removed == [dead_dir]
        assert live.exists() and mine.exists() and other.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    time.sleep(0.1)
    assert live in remove_stale_temporaries(target)  # its writer is gone now


def test_folder_outputs_clean_up_too(tmp_path):
    target = tmp_path / "stage1"
    stale = tmp_path / ".stage1.tmp-999999999"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"0")
    with atomic_dir(target) as tmp:
        (tmp / "vlm.json").write_text("{}")
    assert not stale.exists() and (target / "vlm.json").is_file()


def test_write_csv_is_atomic_and_refuses_ragged_rows(tmp_path: Path) -> None:
    from vislaw.io.atomic import csv_text, write_csv

    target = tmp_path / "t.csv"
    write_csv(target, [{"a": 1, "b": 2.5}, {"a": 3, "b": None}])
    assert target.read_text() == "a,b\n1,2.5\n3,\n"
    with pytest.raises(ValueError, match="row 1 has columns"):
        write_csv(target, [{"a": 1, "b": 2}, {"a": 1, "c": 2}])
    assert target.read_text() == "a,b\n1,2.5\n3,\n"  # the failed write left the old file
    assert not [p for p in tmp_path.iterdir() if p.name != "t.csv"]  # and no temporary
    assert csv_text([], columns=["x", "y"]) == "x,y\n"
    with pytest.raises(ValueError, match="no rows"):
        csv_text([])

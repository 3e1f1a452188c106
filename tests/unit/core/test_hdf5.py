"""The one HDF5 writer: round trip, streaming, and no file under the final name unless complete."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from vislaw.io.hdf5 import open_features, read_features, write_features


def test_round_trip_in_batches(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 4, 3)).astype(np.float32)
    ids = [f"cat/{i}.jpg" for i in range(5)]
    out = tmp_path / "f.h5"
    with write_features(
        out, 5, 4, 3, dtype="float32", grid=(2, 2), meta={"encoder": {"name": "x"}}
    ) as w:
        w.append(ids[:2], data[:2])
        w.append(ids[2:], data[2:])
    got = read_features(out)
    assert got.ids == ids
    np.testing.assert_array_equal(got.features, data)
    assert got.grid == (2, 2)
    assert got.meta == {"encoder": {"name": "x"}}
    with open_features(out) as lazy:
        np.testing.assert_array_equal(lazy.features[3], data[3])
        assert lazy.ids == ids


def test_float16_storage_rounds(tmp_path):
    out = tmp_path / "f.h5"
    with write_features(out, 1, 1, 1, dtype="float16") as w:
        w.append(["a"], np.array([[[1.0 / 3.0]]]))
    value = read_features(out).features
    assert value.dtype == np.float16
    assert abs(float(value[0, 0, 0]) - 1 / 3) < 1e-3


def test_exception_leaves_no_file(tmp_path):
    out = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="boom"), write_features(out, 2, 1, 1) as w:
        w.append(["a"], np.zeros((1, 1, 1)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_write_is_an_error_and_leaves_no_file(tmp_path):
    out = tmp_path / "f.h5"
    with pytest.raises(RuntimeError, match="wrote 1 of 3"), write_features(out, 3, 1, 1) as w:
        w.append(["a"], np.zeros((1, 1, 1)))
    assert not out.exists()


def test_shape_mismatch_is_refused(tmp_path):
    with (
        pytest.raises(ValueError, match="batch shape"),
        write_features(tmp_path / "f.h5", 1, 2, 2) as w,
    ):
        w.append(["a"], np.zeros((1, 3, 2)))


def test_killed_writer_leaves_no_file_under_final_name(tmp_path):
    """A process killed mid-write (SIGKILL: no cleanup runs) never leaves the final name."""
    out = tmp_path / "killed.h5"
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from vislaw.io.hdf5 import write_features
        with write_features({str(out)!r}, 10, 2, 2) as w:
            for i in range(10):
                w.append([str(i)], np.zeros((1, 2, 2)))
                if i == 4:
                    os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode != 0
    assert not out.exists()

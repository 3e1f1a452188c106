"""``python -m vislaw <step>``: one front door to every step's CLI, whose help imports no torch
(checked in fresh interpreters: ``'torch' not in sys.modules``)."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers.paths import ROOT
from vislaw.__main__ import STEPS

PROBE = """
import contextlib, io, json, sys
from vislaw.__main__ import main
out = {}
for step in sys.argv[1:]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            code = main([step, "--help"] if step != "-" else ["--help"])
        except SystemExit as exit:
            code = exit.code
    out[step] = [code, buffer.getvalue()]
out["torch"] = "torch" in sys.modules
print(json.dumps(out))
"""


def _helps(steps: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *steps],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_front_door_and_every_steps_help_import_no_torch():
    steps = list(STEPS)
    got = _helps(["-", *steps])
    assert got["-"][0] == 0 and all(s in got["-"][1] for s in STEPS)
    for step in steps:
        code, text = got[step]
        assert code == 0, (step, text)
        assert text.startswith("usage: python -m vislaw."), (step, text[:200])  # its own parser
    assert got["torch"] is False


def test_python_m_vislaw_runs_the_step_and_names_an_unknown_one(tmp_path):
    """A step's own errors come back as from ``python -m vislaw.<module>``; an unknown step is
    named, with the list, exit code 2."""
    run = [sys.executable, "-m", "vislaw"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([*run, "nope"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 2 and "unknown step 'nope'" in done.stderr
    assert "check_data" in done.stderr
    bad = tmp_path / "c.yaml"
    bad.write_text("seed: 1\nseed: 2\n")
    done = subprocess.run(
        [*run, "check_data", "--config", str(bad), "--dataset", "spair"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert "seed" in done.stderr

"""Steps take typed settings plus keyword-only records, never the raw config (issue 27 scope 2).

``train_phase`` and ``embedding_job`` took the whole config dict and read what they needed by
key; now the caller builds the settings model and a record of the inputs from the checked config
once, and the rank processes of a multi-GPU job rebuild the same from the run's config file.
These tests pin the signatures and show that the records hold what the config functions give.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import yaml

from helpers.paths import ROOT
from vislaw.config import check_config
from vislaw.layout import RunLayout


def _demo(tmp_path: Path) -> dict:
    config = yaml.safe_load((ROOT / "config/demo.yaml").read_text())
    config["results_dir"] = str(tmp_path / "results")
    config["data"]["root"] = str(tmp_path / "data")
    return check_config(config)


def _typed_then_keywords(function, settings_type: str) -> None:
    params = list(inspect.signature(function).parameters.values())
    assert params[0].annotation == settings_type, (function.__name__, params[0])
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), function.__name__


def test_train_phase_and_embedding_job_take_settings_then_keyword_only_records():
    from vislaw.scores.embeddings import embedding_job, embedding_job_on_ranks
    from vislaw.train.runner import train_phase

    _typed_then_keywords(train_phase, "StageSettings")
    _typed_then_keywords(embedding_job, "AScoreSettings")
    # the multi-GPU job crosses the process boundary as the run's config file, then records
    _typed_then_keywords(embedding_job_on_ranks, "str | Path")


def test_phase_inputs_hold_what_the_config_functions_give(tmp_path):
    from vislaw.encoders.registry import encoder_spec, resolve_encoders
    from vislaw.train.build import PhaseInputs
    from vislaw.train.settings import llm_source, stage_data

    config = _demo(tmp_path)
    for stage in (1, 2):
        inputs = PhaseInputs.from_config(config, stage, "clip224")
        assert inputs.spec == encoder_spec(resolve_encoders(config), "clip224")
        assert (inputs.json_path, inputs.image_folder) == stage_data(config, stage)
        assert inputs.llm.source_in(inputs.layout) == llm_source(config)
        assert inputs.layout.run_dir == RunLayout.from_config(config).run_dir


def test_caption_source_and_the_saved_rank_call_of_the_embeddings_job(tmp_path):
    from vislaw.scores.embeddings import CaptionSource, EmbeddingPaths, embedding_rank
    from vislaw.train.settings import stage_data

    config = _demo(tmp_path)
    captions = CaptionSource.from_config(config)
    assert (captions.json, captions.image_folder) == stage_data(config, 1)
    assert captions.seed == config["seed"]
    paths = EmbeddingPaths(tmp_path / "s1", {"mme": tmp_path / "m.json"}, {"mme": "e.h5"}, "l.json")
    call = {"config": "c.yaml", **paths.as_call(), "shard": [0, 2], "encoder": None}
    json.dumps(call)  # a saved call is JSON
    assert set(call) == set(inspect.signature(embedding_rank).parameters)
    assert call["samples"] == {"mme": str(tmp_path / "m.json")}


def test_the_rank_entry_point_is_its_own_module_and_runs_a_saved_call(tmp_path):
    """``python -m vislaw.ranks FILE`` runs from vislaw/ranks/__main__.py; the launcher's
    library module (core layer) has no ``__main__`` block."""
    from vislaw.ranks import rank_program

    assert "if __name__" not in (ROOT / "vislaw/ranks/__init__.py").read_text()
    out = tmp_path / "written.txt"
    code = "import sys, pathlib; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    argv = [sys.executable, "-c", code, str(out), "from a rank"]
    saved = tmp_path / "call.json"
    saved.write_text(
        json.dumps({"target": "subprocess:run", "what": "probe", "kwargs": {"args": argv}})
    )
    subprocess.run([sys.executable, *rank_program(saved)], check=True, cwd=ROOT, timeout=300)
    assert out.read_text() == "from a rank"

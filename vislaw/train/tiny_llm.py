"""The demo LLM for a config: a tokenizer trained on the run's LLaVA JSON texts plus a seeded
tiny Llama (vislaw.vlm.random_llm), written where ``llm_source(config)`` points.

Step ``tiny_llm``: :func:`run_tiny_llm`; rule ``tiny_llm`` (workflow_scripts/tiny_llm.py) and
the CLI ``python -m vislaw.train.tiny_llm --config config/demo.yaml [--out DIR]`` call it.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vislaw.train.settings import DATA_KEYS, LlmSettings, stage_data


def corpus_files(config: Mapping[str, Any]) -> list[Path]:
    """The pretrain and instruct LLaVA JSON files that the checked config names."""
    return [
        stage_data(config, stage)[0] for stage, key in DATA_KEYS.items() if key in config["data"]
    ]


def run_tiny_llm(
    llm: LlmSettings, seed: int, llava_jsons: Sequence[str | Path], out_dir: str | Path
) -> Path:
    """Write the tiny LLM (``llm.tiny`` set): a tokenizer trained on the texts of
    ``llava_jsons`` and a Llama seeded with ``seed``; returns its folder."""
    # torch and transformers load here, not at import: `python -m vislaw tiny_llm --help` stays light
    from vislaw.data.llava import conversation_texts, read_llava_json
    from vislaw.vlm.random_llm import write_tiny_llm

    if not llm.tiny:
        raise ValueError("config key 'llm.tiny': not set, the config uses a real LLM")
    texts: list[str] = []
    for path in llava_jsons:
        texts.extend(conversation_texts(read_llava_json(path)))
    if not texts:
        raise ValueError("config key 'data': the tiny LLM's tokenizer needs pretrain/instruct data")
    return write_tiny_llm(texts, Path(out_dir), llm.tiny_overrides(), seed)


def write_config_llm(config: Mapping[str, Any], out_dir: str | Path | None = None) -> Path:
    """:func:`run_tiny_llm` for a checked config (default folder: ``llm_source(config)``)."""
    llm = LlmSettings.from_config(config)
    out = out_dir if out_dir else (llm.source(config) if llm.tiny else "")
    return run_tiny_llm(llm, int(config["seed"]), corpus_files(config), out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vislaw.train.tiny_llm", description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", help="default: <results_dir>/<run>/llm")
    args = parser.parse_args(argv)
    from vislaw.config import load_config

    print(f"wrote {write_config_llm(load_config(args.config), args.out)}")


if __name__ == "__main__":
    from vislaw.config import run_cli

    raise SystemExit(run_cli(main))

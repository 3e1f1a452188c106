# The README's two commands: `make demo` and `make test`. Both set up the venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
CORES ?= 2

.PHONY: setup demo test lint format clean-demo cost plan

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --profile profiles/local

# What config.yaml's run costs (CONFIG=... for another): jobs, GPUs, hours, disk per rule.
CONFIG ?= config.yaml
cost: setup
	$(BIN)/python -m vislaw.cost --config $(CONFIG)

# The SLURM plan of CONFIG before any download: every job (GPUs, memory, time, partition), the
# cost table and what `prepare` still has to fetch. Needs no data and no conda (vislaw/plan.py).
plan: setup
	$(BIN)/python -m vislaw.plan --config $(CONFIG)

test: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -ra

lint: setup
	$(BIN)/ruff check .
	$(BIN)/snakefmt --check Snakefile rules/
	$(BIN)/snakemake --lint --configfile config/demo.yaml

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
	$(BIN)/snakefmt Snakefile rules/

clean-demo:
	rm -rf results/demo

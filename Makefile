# The README's two commands: `make demo` and `make test`. Both set up the venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
CORES ?= 2

.PHONY: setup demo report test test-fast lint format clean-demo cost plan rehearsal

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

# The demo's DAG (the policy included), its HTML report, then its answer: the recommended
# encoder, the law's R² (in-sample, leave-one-out) and the report's path (vislaw/law/answer.py).
demo: setup
	$(BIN)/snakemake --cores $(CORES) --configfile config/demo.yaml --profile profiles/local
	$(MAKE) --no-print-directory report REPORT_CONFIG=config/demo.yaml
	$(BIN)/python -m vislaw.law.answer --config config/demo.yaml

# The HTML report of a finished run of REPORT_CONFIG (default the demo's), written to
# <results_dir>/<run>/report.html: every figure, table and text the run's targets made.
REPORT_CONFIG ?= config/demo.yaml
report: setup
	$(BIN)/snakemake --configfile $(REPORT_CONFIG) --report \
		"$$($(BIN)/python -m vislaw.law.answer --config $(REPORT_CONFIG) --report-path)"
	@echo "report: $$($(BIN)/python -m vislaw.law.answer --config $(REPORT_CONFIG) --report-path)"

# What config.yaml's run costs (CONFIG=... for another): jobs, GPUs, hours, disk per rule.
CONFIG ?= config.yaml
cost: setup
	$(BIN)/python -m vislaw.cost --config $(CONFIG)

# The SLURM plan of CONFIG before any download: every job (GPUs, memory, time, partition), the
# cost table and what `prepare` still has to fetch. Needs no data and no conda (vislaw/plan.py).
plan: setup
	$(BIN)/python -m vislaw.plan --config $(CONFIG)

# Two tiers, both the gate: the fast one (unit tests, a few minutes) stops at its first failure;
# then the slow one (`slow`: Snakemake runs, several ranks, the SLURM cluster, the browser, the
# rehearsal of config.yaml), which prints its 20 longest tests.
# `make test-fast` runs the first alone.
test: test-fast
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -ra -m slow --durations=20

test-fast: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -ra -x -m "not slow"

# config.yaml end to end at toy size through a loopback Hub (tests/workflow/test_rehearsal.py):
# every default target, ~15 min on 2 cores; also in `make test`'s slow tier.
rehearsal: setup
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/python -m pytest -q -ra -m rehearsal \
		tests/workflow/test_rehearsal.py

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

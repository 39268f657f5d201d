# gradlab — every target bootstraps .venv on first use (only python3 is needed).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXP    ?= exploding_identity
LAB    := $(BIN)/python -m lab

.DEFAULT_GOAL := help
.PHONY: help demo test test-fast ui server sweep experiments report bench sync lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# PYTHONWARNINGS: setuptools' editable-install notice is not the user's concern
	PYTHONWARNINGS=ignore $(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)  ## run the exploding_identity and vanishing_sigmoid sweeps into sqlite:///mlruns.db
	$(BIN)/python -m lab.demo

# Three workers, a test file each at a time (files share their expensive fixtures), longest
# files first (tests/conftest.py orders them; --no-loadscope-reorder keeps that order): the
# suite is mostly subprocesses and their waits, so a third worker on 2 cores fills the gaps.
PYTEST := $(BIN)/python -m pytest -q -n 3 --dist loadfile --no-loadscope-reorder

test: $(STAMP)  ## the whole test suite (CUDA parts on the simulator), ~5-6 min on 2 cores
	$(PYTEST)

test-fast: $(STAMP)  ## the suite without tests marked slow
	$(PYTEST) -m "not slow"

ui: $(STAMP)  ## MLflow UI on http://127.0.0.1:5000 (loopback only; no background job workers)
	@echo "MLflow UI: open http://127.0.0.1:5000, click 'Model training' (top left), then a study; README.md, 'MLflow UI', says where to click"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --default-artifact-root $(CURDIR)/mlartifacts --host 127.0.0.1 --port 5000

server: $(STAMP)  ## MLflow tracking server for parallel launchers (127.0.0.1:5001, SQLite backend)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlruns.db --artifacts-destination $(CURDIR)/mlartifacts --host 127.0.0.1 --port 5001

sweep: $(STAMP)  ## run one study: make sweep EXP=vanishing_sigmoid
	$(LAB) -m +experiment=$(EXP)

experiments: $(STAMP)  ## run every study in conf/experiment/
	@for exp in $$(ls conf/experiment | sed 's/\.yaml$$//'); do \
	  echo "== $$exp"; $(LAB) -m +experiment=$$exp || exit 1; done

report: $(STAMP)  ## figures and measured tables for experiments/ from the MLflow store
	$(BIN)/python -m lab.report

bench: $(STAMP)  ## speed: numpy vs numba (vs torch/jax when installed: pip install -e '.[bench]')
	$(BIN)/python -m lab.bench
	$(BIN)/python -m lab.bench.sweeps  # what tracking costs a run and a sweep (issue 13)

sync: $(STAMP)  ## run directories into the store (idempotent): make sync [PATHS=multirun/x] [ARGS=--repair]
	$(BIN)/python -m lab.sync $(PATHS) $(ARGS)

lint: $(STAMP)  ## ruff
	$(BIN)/ruff check lab tests

clean:  ## remove outputs, caches and the venv (keeps mlruns.db: rm it yourself)
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache bench-results.json
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

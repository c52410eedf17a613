# jpq — set-up and main jobs. Everything installs into .venv on first use.
# The torch requirement lives in one overridable variable: a plain `torch` would pull a multi-GB CUDA
# build; e.g. `make install TORCH_SPEC="torch==2.13.0"` or point it at a CUDA wheel on a GPU machine.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run`: the full comparison on the embedded default (conf/experiment/compare_digits.yaml):
# joint sweep + mixprec + fixed-precision baselines, then the Pareto report
RUN_DIR ?= outputs/make_run
# parallel jobs of `make run` (each takes its share of the cores)
JOBS ?= 2

.PHONY: install run test lint clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]" "$(TORCH_SPEC)"
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/jpq search -m experiment=compare_digits hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS) hydra.sweep.dir=$(RUN_DIR)
	$(BIN)/jpq plot-pareto $(RUN_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest tests

lint: $(STAMP)
	$(BIN)/ruff check jpq tests scripts

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Two entry points that work on a fresh machine (Python 3.11, no GPU):
#   make demo   - create .venv, install, run the main job on simulated markets
#   make test   - create .venv, install with test extras, run the fast test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Number of pytest workers; CI machines have 2 cores.
WORKERS ?= 2

.PHONY: demo test test-slow test-gpu bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/jaxhedge demo --out runs/demo

# Layer contracts first (pyproject [tool.importlinter]), then the suite, then every module's
# doctests.

test: $(VENV)/.installed-test
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(WORKERS) -m "not slow" --durations=40
	$(BIN)/python -m pytest -n $(WORKERS) --doctest-modules jaxhedge

# On a machine with an accelerator (jax with its GPU plugin installed in .venv).
test-gpu: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m gpu -v

test-slow: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n $(WORKERS) -m slow --durations=15

bench: $(VENV)/.installed
	$(BIN)/python -m benchmarks.throughput --out benchmarks/results/throughput_cpu.json

clean:
	rm -rf $(VENV) runs .pytest_cache

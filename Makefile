# Quickstart:  make run   (set up, then the main job on the embedded defaults)
#              make test  (set up, then lint and the test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint silver compile-labeler bronze compile-generator bronze-report

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

# The silver set (data/silver/): 2,000 corpus sentences picked by the relevance prefilter
# (+20% random negatives), labelled by the compiled program with the embedded LM.
# Resumable: rerun after an interruption to continue where it stopped.
silver: setup
	$(PY) -m programs.label --prefilter --limit 2000 --pool 30000 --out data/silver/silver.jsonl

# Recompile the labeller for the embedded LM (writes compiled/data_to_label.local.json).
compile-labeler: setup
	$(PY) -m programs.compile --program data-to-label --optimizer labeled-fewshot --lm local \
		--train data/gold/train.jsonl --dev data/gold/dev.jsonl --dev-limit 60

# The bronze set (data/bronze/): >= 50 kept sentences per category, NONE hard negatives
# and two-category sentences, written by LabelToData from the guideline alone, filtered
# (PHI, duplicates, leakage against gold, round trip). Resumable call by call.
bronze: setup
	$(PY) -m programs.generate --lm local --per-category 50 --max-rounds 10 --out data/bronze/bronze.jsonl

# Recompile the generator for the embedded LM (writes compiled/label_to_data.local.json).
compile-generator: setup
	$(PY) -m programs.compile --program label-to-data --optimizer random-search --lm local \
		--dev data/gold/dev.jsonl --k 2 --per-target 2 --trials 2

bronze-report: setup
	$(PY) -m evals.run bronze-quality --bronze data/bronze/bronze.jsonl

# Quickstart:  make run   (set up, then the main job on the embedded defaults)
#              make test  (set up, then lint and the test suite)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup run test lint silver compile-labeler bronze compile-generator bronze-report cv

setup: $(STAMP)

# --no-cache-dir: the embedded model's 22 parts and torch would otherwise sit twice on disk
# (cache and venv); a fresh machine with little free disk ran out of space that way.
# torch first: `torch==2.13.0` takes the CPU build on this machine; any other spec pulls CUDA wheels.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-cache-dir --upgrade pip
	$(PY) -m pip install -q --no-cache-dir torch==2.13.0
	$(PY) -m pip install -q --no-cache-dir -e ".[local,dev,scale]"
	touch $(STAMP)

run: setup
	$(VENV)/bin/clinsynth run

lint: setup
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

# The silver set (tasks/ad_signs/data/): corpus sentences picked by the relevance prefilter, labelled
# by the compiled program with the embedded LM; how many and from what pool: the task's
# [label] settings (tasks/ad_signs/clinsynth.toml). Resumable: rerun to continue.
silver: setup
	$(PY) -m programs.label --silver

# Recompile the labeller for the embedded LM (writes tasks/ad_signs/compiled/data_to_label.local.json).
compile-labeler: setup
	$(PY) -m programs.compile --program data-to-label --optimizer labeled-fewshot --lm local \
		--train tasks/ad_signs/gold/train.jsonl --dev tasks/ad_signs/gold/dev.jsonl --dev-limit 60

# The bronze set (tasks/ad_signs/data/): kept sentences per category, NONE hard negatives and
# two-category sentences, written by LabelToData from the guideline alone, filtered (PHI,
# duplicates, leakage against gold, round trip); quotas and rounds: the task's [generate]
# settings. Resumable call by call.
bronze: setup
	$(PY) -m programs.generate

# Recompile the generator for the embedded LM (writes tasks/ad_signs/compiled/label_to_data.local.json).
compile-generator: setup
	$(PY) -m programs.compile --program label-to-data --optimizer random-search --lm local \
		--dev tasks/ad_signs/gold/dev.jsonl --k 2 --per-target 2 --trials 2

bronze-report: setup
	$(PY) -m evals.run bronze-quality --bronze tasks/ad_signs/data/bronze.jsonl

# Cross-validated augmentation (tasks/ad_signs/reports/augmentation.*): gold vs gold + LLM data, folds by note,
# seeds, paired CIs, the bronze learning curve, then the default model on gold test.
cv: setup
	$(PY) -m evals.run augmentation

"""Which labeller class a compiled data-to-label file holds, and loading it.

Two programs label sentences: ``DataToLabel`` (a label list per sentence) and
``CategoryDecisions`` (a yes/no per category with fitted thresholds). A compiled file of the
second carries its thresholds in its state, so the file says which class to build; every
caller loads labellers here instead of assuming one class.
"""

from __future__ import annotations

import json
from pathlib import Path

from clinsynth.programs.category_decisions import STATE_KEY, CategoryDecisions
from clinsynth.programs.data_to_label import DataToLabel

from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import ClinsynthError
from clinsynth.llm.compiled import load_compiled


def holds_decisions(path: Path) -> bool:
    """Does the compiled file hold a CategoryDecisions program (its state has thresholds)?"""
    try:
        return STATE_KEY in json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ClinsynthError(f"{path}: not a readable compiled program ({exc})") from exc


def load_labeller(taxonomy: Taxonomy, path: Path | None, samples: int = 1) -> DataToLabel:
    """The labeller of a compiled file (checked against the taxonomy), or zero-shot DataToLabel for None.

    ``samples`` > 1 (confidence from agreement of sampled label lists) applies to label-list
    programs only; a decisions program has a probability per category already.
    """
    if path is not None and Path(path).exists() and holds_decisions(path):
        if samples > 1:
            raise ClinsynthError(f"{path}: a per-category decisions labeller takes no --samples (it has logprobs)")
        return load_compiled(CategoryDecisions(taxonomy), path, taxonomy)
    program = DataToLabel(taxonomy, samples=samples)
    if path is not None:
        load_compiled(program, path, taxonomy)
    return program

"""Run a program over examples under an LM handle and score it: one loop for every caller.

``run_timed`` is the loop (``clinsynth.jobs.runner.run_all``: retries, threads, progress, and
the wall time); ``score_labeller`` runs a data-to-label program over gold-labelled
sentences and scores it. Compile (before/after), the labeller eval suite and the cost
benchmark all score labellers through it, so "failed" and "F1" mean the same everywhere.
The generator's scores (``programs.compile_generator.generator_dev_scores``) have their
own metric but use the same loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clinsynth.jobs.runner import Attempt, run_all
from clinsynth.model.metrics import multilabel_scores

# The keys compile keeps in a compiled program's metadata (dev_before / dev_after).
SUMMARY_KEYS = ("n", "mean_set_f1", "micro_f1", "macro_f1", "binary_f1", "failed", "seconds_per_sentence")


def run_timed(
    fn: Callable[[Any], Any],
    inputs: Sequence[Any],
    handle: Any,
    threads: int = 1,
    desc: str = "",
    show_progress: bool = True,
) -> tuple[list[Attempt], float]:
    """``run_all(fn, inputs)`` under ``handle`` (results in input order) and the seconds it took."""
    started = time.monotonic()
    results = run_all(fn, list(inputs), handle, threads=threads, desc=desc, show_progress=show_progress)
    return results, time.monotonic() - started


def text_and_labels(example: Any) -> tuple[str, list[str]]:
    """A ``Record`` (text, labels) or a ``dspy.Example`` (sentence, categories)."""
    if hasattr(example, "text") and hasattr(example, "labels"):
        return example.text, list(example.labels)
    return example.sentence, list(example.categories)


@dataclass
class LabellerRun:
    """A labeller's answers on labelled sentences, and their scores."""

    texts: list[str]
    gold: list[list[str]]
    attempts: list[Attempt]  # per sentence, in input order
    seconds: float
    scores: dict[str, Any]  # clinsynth.model.metrics.multilabel_scores, failed sentences as NONE

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def predicted(self) -> list[list[str] | None]:
        """Label sets per sentence; None where the answer stayed unusable after retries."""
        return [list(a.value.categories) if a.ok else None for a in self.attempts]

    @property
    def failed(self) -> int:
        return sum(not a.ok for a in self.attempts)

    @property
    def seconds_per_sentence(self) -> float:
        return self.seconds / max(1, self.n)

    def summary(self) -> dict[str, Any]:
        """The scores compile records (``SUMMARY_KEYS``)."""
        extra = {"n": self.n, "failed": self.failed, "seconds_per_sentence": self.seconds_per_sentence}
        return {k: extra[k] if k in extra else self.scores[k] for k in SUMMARY_KEYS}


def score_labeller(
    program: Any,
    examples: Sequence[Any],
    handle: Any,
    threads: int = 1,
    desc: str = "",
    show_progress: bool = True,
) -> LabellerRun:
    """Run a DataToLabel ``program`` on ``examples`` (Records or dspy.Examples) and score it.

    A sentence whose answer fails after retries counts as NONE in the scores and is
    counted in ``failed`` (a labeller that cannot answer should not look better than one
    that answers NONE).
    """
    pairs = [text_and_labels(e) for e in examples]
    texts = [t for t, _ in pairs]
    gold = [g for _, g in pairs]
    attempts, seconds = run_timed(
        lambda text: program(sentence=text), texts, handle, threads=threads, desc=desc, show_progress=show_progress
    )
    predicted = [list(a.value.categories) if a.ok else [] for a in attempts]
    scores = multilabel_scores(gold, predicted, program.taxonomy)
    return LabellerRun(texts=texts, gold=gold, attempts=attempts, seconds=seconds, scores=scores)

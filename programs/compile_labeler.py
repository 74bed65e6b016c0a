"""Compiling DataToLabel: gold examples, stratified demo order, the set-F1 metric.

Gold train sentences with their labels are the demos (and what bootstrapping runs on),
so a compiled labeller carries private text: its metadata records that
(``demos_from``), and the privacy session keeps it off unapproved remote endpoints.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import dspy
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.optimizers import Problem

from clinsynth.data.records import Record
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.llm.lm import LMHandle
from clinsynth.model.metrics import set_f1

PROGRAM = "data-to-label"
DEFAULT_K = 18


def to_examples(records: Sequence[Record]) -> list[dspy.Example]:
    return [dspy.Example(sentence=r.text, categories=list(r.labels)).with_inputs("sentence") for r in records]


def stratified(examples: Sequence[dspy.Example], taxonomy: Taxonomy, seed: int) -> list[dspy.Example]:
    """Shuffle, then alternate categories (by first label, guideline order) with NONE examples.

    A prefix of ``2 * len(categories)`` holds every category once and as many NONE
    sentences: demos cover the label set, and half of them show what is *not* labelled,
    which a small model needs more than more positives (it over-labels).
    """
    rng = random.Random(seed)
    pools: dict[str, list[dspy.Example]] = {}
    for ex in examples:
        pools.setdefault(taxonomy.first_label(ex.categories), []).append(ex)
    for pool in pools.values():
        rng.shuffle(pool)
    negatives = pools.pop(NONE_LABEL, [])
    out: list[dspy.Example] = []
    while any(pools.values()) or negatives:
        for name in taxonomy.names:
            if pools.get(name):
                out.append(pools[name].pop())
                if negatives:
                    out.append(negatives.pop())
        if not any(pools.values()):
            out.extend(reversed(negatives))
            negatives = []
    return out


def label_f1(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float:
    """Per-sentence set F1 (both NONE = 1); the compile metric."""
    return set_f1(example.categories, pred.categories)


def label_f1_with_feedback(
    gold: dspy.Example, pred: dspy.Prediction, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """GEPA's metric: the score plus what was missed or wrongly added, in words."""
    score = set_f1(gold.categories, pred.categories)
    missed = sorted(set(gold.categories) - set(pred.categories))
    extra = sorted(set(pred.categories) - set(gold.categories))
    if score == 1:
        feedback = "Correct."
    else:
        feedback = f"Expected {gold.categories or ['NONE']}."
        if missed:
            feedback += f" Missed {missed}."
        if extra:
            feedback += f" Wrongly added {extra}: check the guideline's exclusions (negation, normal findings)."
    return dspy.Prediction(score=score, feedback=feedback)


def labeler_problem(
    student: DataToLabel,
    train: list[dspy.Example],
    dev: list[dspy.Example],
    handle: LMHandle,
    k: int = DEFAULT_K,
    seed: int = 0,
    threads: int = 1,
    trials: int = 6,
) -> Problem:
    """The optimizer problem for a labeller: stratified gold demos, exact-answer bootstrapping."""
    return Problem(
        program=PROGRAM,
        student=student,
        train=stratified(train, student.taxonomy, seed),
        dev=dev,
        metric=label_f1,
        lm=handle.lm,
        adapter=handle.adapter,
        k=k,
        seed=seed,
        threads=threads,
        trials=trials,
        # Half the demos bootstrapped (the model's own right answers), up to k labelled.
        max_bootstrapped=max(1, k // 2),
        max_labeled=k,
        metric_threshold=1.0,  # a bootstrapped demo must be exactly right
        feedback_metric=label_f1_with_feedback,
        demo_pool=list(train),  # knn: every train sentence, in file order
    )

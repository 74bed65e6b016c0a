"""Weak supervision: several noisy labellers' votes on silver, combined by a label model.

Silver's own labels come from one weak labeller (the LLM). Weak supervision treats it as
one labelling function among others and lets a label model (snorkel's ``LabelModel``,
Ratner et al. 2019; with an LLM as a labelling function as in Smith et al. 2022,
"Language Models in the Loop") estimate how far to trust each from their agreements and
disagreements alone, without gold labels. Each category is its own binary problem, so a
labelling function may be good at one category and poor at another.

The labelling functions a task has without training anything new:

- the task's rule list: positive on a hit, negative otherwise;
- the LLM's silver labels: positive when it gave the category, negative otherwise;
- a student trained on gold only: positive at or above its tuned threshold, else negative.

A category none of the functions ever votes for gets probability 0 without a fit (the
label model needs a positive vote to estimate anything).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from clinsynth.data.records import Provenance, Record

NEG, POS = 0, 1
MIN_SOURCES = 3  # fewer cannot be told apart by agreement alone (snorkel refuses them too)
POSITIVE_AT = 0.5  # label-model probability from which a sentence counts as positive
LABEL_MODEL_EPOCHS = 500
MIN_CLASS_BALANCE = 0.01  # the label model's prior for a category never seen in gold train
WEAK_SUPERVISION = "weak supervision"  # provenance attribute naming how the labels were made


@dataclass(frozen=True)
class WeakLabels:
    """The label model's output for one set of sentences."""

    sources: tuple[str, ...]  # the labelling functions, in vote order
    probabilities: np.ndarray  # sentences x categories: P(positive)
    accuracies: dict[str, list[float]]  # category -> the label model's accuracy estimate of each source

    def positive(self) -> np.ndarray:
        return self.probabilities >= POSITIVE_AT


def combine_votes(votes: np.ndarray, sources: Sequence[str], names: Sequence[str], class_balance: np.ndarray,
                  seed: int = 0) -> WeakLabels:  # fmt: skip
    """``votes``: sentences x sources x categories of NEG/POS; ``class_balance``: the share of
    positives per category (from gold train), the label model's prior."""
    from snorkel.labeling.model import LabelModel

    if votes.ndim != 3 or votes.shape[1] != len(sources) or votes.shape[2] != len(names):
        raise ValueError(f"votes must be sentences x {len(sources)} sources x {len(names)} categories")
    if len(sources) < MIN_SOURCES:
        raise ValueError(f"a label model needs at least {MIN_SOURCES} labelling functions, got {len(sources)}")
    probabilities = np.zeros((votes.shape[0], len(names)))
    accuracies: dict[str, list[float]] = {}
    for j, name in enumerate(names):
        matrix = votes[:, :, j].astype(int)
        if not (matrix == POS).any():
            accuracies[name] = [float("nan")] * len(sources)
            continue
        prior = float(np.clip(class_balance[j], MIN_CLASS_BALANCE, 1 - MIN_CLASS_BALANCE))
        model = LabelModel(cardinality=2, verbose=False)
        model.fit(matrix, class_balance=[1 - prior, prior], n_epochs=LABEL_MODEL_EPOCHS, seed=seed,
                  progress_bar=False)  # fmt: skip
        probabilities[:, j] = model.predict_proba(matrix)[:, POS]
        accuracies[name] = [round(float(w), 4) for w in model.get_weights()]
    return WeakLabels(tuple(sources), probabilities, accuracies)


def weakly_labelled(records: Sequence[Record], weak: WeakLabels, names: Sequence[str], seed: int = 0) -> list[Record]:
    """``records`` relabelled by the label model: every record with a positive category, and as
    many of the rest (no category positive) drawn at random, so the corpus's mass of
    irrelevant sentences does not drown the few positive ones."""
    positive = weak.positive()
    has_label = positive.any(axis=1)
    negatives = [i for i in range(len(records)) if not has_label[i]]
    random.Random(seed).shuffle(negatives)
    keep = sorted([i for i in range(len(records)) if has_label[i]] + negatives[: int(has_label.sum())])
    out = []
    for i in keep:
        record = records[i]
        labels = [n for n, hit in zip(names, positive[i], strict=True) if hit]
        out.append(replace(record, labels=labels, provenance=_provenance(record.provenance, weak, names, i)))
    return out


def _provenance(base: Provenance | None, weak: WeakLabels, names: Sequence[str], i: int) -> Provenance | None:
    if base is None:
        return None
    probabilities = {n: round(float(p), 4) for n, p in zip(names, weak.probabilities[i], strict=True) if p > 0}
    attributes = {**(base.attributes or {}), WEAK_SUPERVISION: {"sources": list(weak.sources),
                                                                "probabilities": probabilities}}  # fmt: skip
    return replace(base, attributes=attributes)

"""Sentences whose label the rest of their own set contradicts (confident learning, cleanlab).

A generated sentence can pass the round trip and still carry a wrong category: the labeller
shares the generator's blind spots. Confident learning (Northcutt et al., "Confident Learning:
Estimating Uncertainty in Dataset Labels", 2021) finds such labels from out-of-fold predicted
probabilities: a sentence is an issue when a model that never saw it is confident of another
label set than the one it carries. The probabilities come from one logistic regression per
category on frozen MiniLM embeddings, cross-fitted over the set itself, so no gold sentence
and no LM is involved; ``cleanlab.multilabel_classification.filter.find_label_issues`` decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clinsynth.model.metrics import category_matrix

FOLDS = 5
# Embeddings are normalised, so C=4 is weak regularisation; balanced weights keep a category
# with few sentences from being predicted absent everywhere.
LOGISTIC_C = 4.0


@dataclass(frozen=True)
class LabelIssue:
    """One sentence of the set: its index and cleanlab's label quality (0 bad .. 1 good)."""

    index: int
    quality: float


def out_of_fold_probabilities(vectors: np.ndarray, targets: np.ndarray, *, folds: int = FOLDS,
                              seed: int = 0) -> np.ndarray:  # fmt: skip
    """P(category) per sentence from models that did not see it; shape of ``targets`` (n x k, 0/1).

    A category with fewer positives (or negatives) than ``folds`` cannot be cross-fitted: its
    column is the label itself, so it never makes an issue.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    probabilities = targets.astype(float).copy()
    for j in range(targets.shape[1]):
        column = targets[:, j]
        if min(int(column.sum()), int(len(column) - column.sum())) < folds:
            continue
        model = LogisticRegression(C=LOGISTIC_C, max_iter=2000, class_weight="balanced")
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        probabilities[:, j] = cross_val_predict(model, vectors, column, cv=split, method="predict_proba")[:, 1]
    return probabilities


def find_label_issues(vectors: np.ndarray, label_sets: Sequence[Sequence[str]], names: Sequence[str], *,
                      folds: int = FOLDS, seed: int = 0) -> list[LabelIssue]:  # fmt: skip
    """The sentences cleanlab flags, worst first; ``label_sets`` hold category names (empty: NONE)."""
    from cleanlab.multilabel_classification import get_label_quality_scores
    from cleanlab.multilabel_classification.filter import find_label_issues as cleanlab_issues

    if len(label_sets) != len(vectors):
        raise ValueError(f"{len(label_sets)} label sets for {len(vectors)} embedded sentences")
    targets = category_matrix(label_sets, names)
    labels = [[int(j) for j in np.flatnonzero(row)] for row in targets]  # cleanlab's multi-label form
    probabilities = out_of_fold_probabilities(vectors, targets, folds=folds, seed=seed)
    flagged = cleanlab_issues(labels=labels, pred_probs=probabilities, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(labels, probabilities)
    return [LabelIssue(int(i), float(quality[i])) for i in flagged]

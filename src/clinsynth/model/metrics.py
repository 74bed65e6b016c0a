"""Scores for the three views of the task: multi-label, binary (any vs NONE), multi-class.

Labels are sets of category names; the empty set is NONE. Per-category F1 is undefined
(reported as None) when a category has neither gold nor predicted examples.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy

LabelSets = Sequence[Sequence[str]]


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else 0.0


def set_f1(gold: Sequence[str], predicted: Sequence[str]) -> float:
    """F1 between two label sets of one sentence; two empty sets (both NONE) score 1."""
    g, p = set(gold), set(predicted)
    if not g and not p:
        return 1.0
    return 2 * len(g & p) / (len(g) + len(p))


def confusion(pairs: Iterable[tuple[bool, bool]]) -> Counts:
    """Counts from (gold is positive, prediction is positive) pairs."""
    tp = fp = fn = 0
    for is_gold, is_pred in pairs:
        tp += is_gold and is_pred
        fp += is_pred and not is_gold
        fn += is_gold and not is_pred
    return Counts(tp, fp, fn)


def category_counts(gold: LabelSets, predicted: LabelSets, names: Sequence[str]) -> dict[str, Counts]:
    _check_lengths(gold, predicted)
    pairs = list(zip(gold, predicted, strict=True))
    return {name: confusion((name in g, name in p) for g, p in pairs) for name in names}


def multilabel_scores(gold: LabelSets, predicted: LabelSets, taxonomy: Taxonomy) -> dict:
    """Per-category P/R/F1, micro and macro F1 (macro over categories present in gold),
    binary F1 (any category vs NONE), multi-class accuracy and macro F1, exact match."""
    counts = category_counts(gold, predicted, taxonomy.names)
    micro = Counts(
        sum(c.tp for c in counts.values()), sum(c.fp for c in counts.values()), sum(c.fn for c in counts.values())
    )
    present = [n for n in taxonomy.names if counts[n].tp + counts[n].fn > 0]
    binary = confusion((bool(g), bool(p)) for g, p in zip(gold, predicted, strict=True))
    gold_first = [taxonomy.first_label(g) for g in gold]
    pred_first = [taxonomy.first_label(p) for p in predicted]
    first_pairs = list(zip(gold_first, pred_first, strict=True))
    class_f1 = [
        confusion((g == c, p == c) for g, p in first_pairs).f1 for c in (*taxonomy.names, NONE_LABEL) if c in gold_first
    ]
    n = len(gold)
    return {
        "n": n,
        "per_category": {
            name: {
                "precision": c.precision,
                "recall": c.recall,
                "f1": c.f1 if c.tp + c.fp + c.fn else None,
                "support": c.tp + c.fn,
            }
            for name, c in counts.items()
        },
        "micro_f1": micro.f1,
        "macro_f1": sum(counts[name].f1 for name in present) / len(present) if present else 0.0,
        "binary_f1": binary.f1,
        "multiclass_accuracy": sum(g == p for g, p in first_pairs) / n if n else 0.0,
        "multiclass_macro_f1": sum(class_f1) / len(class_f1) if class_f1 else 0.0,
        "exact_match": sum(set(g) == set(p) for g, p in zip(gold, predicted, strict=True)) / n if n else 0.0,
        "mean_set_f1": sum(set_f1(g, p) for g, p in zip(gold, predicted, strict=True)) / n if n else 0.0,
    }


def outcome_matrix(gold: LabelSets, predicted: LabelSets, names: Sequence[str]) -> np.ndarray:
    """Per sentence, the 0/1 outcomes the headline F1s are summed from: true positive, false
    positive and false negative per category, then the same three for binary (any vs NONE).

    Summed over any subset of rows (with weights: a bootstrap resample), they give that
    subset's micro, macro and binary F1 (``headline_f1``) without rescoring label sets.
    """
    _check_lengths(gold, predicted)
    g = category_matrix(gold, names).astype(bool)
    p = category_matrix(predicted, names).astype(bool)
    gb, pb = g.any(axis=1, keepdims=True), p.any(axis=1, keepdims=True)
    parts = [g & p, p & ~g, g & ~p, gb & pb, pb & ~gb, gb & ~pb]
    return np.concatenate(parts, axis=1).astype(np.float64).reshape(len(gold), 3 * len(names) + 3)


def headline_f1(counts: np.ndarray, n_categories: int) -> np.ndarray:
    """Micro, macro and binary F1 (``multilabel_scores``' definitions) from summed outcomes:
    ``counts`` is ``(..., 3 * n_categories + 3)``; the result is ``(3, ...)``."""
    c = n_categories
    tp, fp, fn = counts[..., :c], counts[..., c : 2 * c], counts[..., 2 * c : 3 * c]

    def f1(t: np.ndarray, f_p: np.ndarray, f_n: np.ndarray) -> np.ndarray:
        denominator = 2 * t + f_p + f_n
        return np.divide(2 * t, denominator, out=np.zeros_like(t), where=denominator > 0)

    micro = f1(tp.sum(-1), fp.sum(-1), fn.sum(-1))
    present = (tp + fn) > 0  # macro averages over the categories present in gold
    macro = np.divide((f1(tp, fp, fn) * present).sum(-1), present.sum(-1),
                      out=np.zeros_like(micro), where=present.sum(-1) > 0)  # fmt: skip
    binary = f1(counts[..., 3 * c], counts[..., 3 * c + 1], counts[..., 3 * c + 2])
    return np.stack([micro, macro, binary])


def _check_lengths(gold: LabelSets, predicted: LabelSets) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold label sets but {len(predicted)} predictions")


def label_matrix(label_sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """One row per sentence: 1 for each category it has, then a NONE column."""
    rows = [[int(n in set(labels)) for n in names] + [int(not labels)] for labels in label_sets]
    return np.asarray(rows, dtype=np.int64).reshape(len(rows), len(names) + 1)


def category_matrix(label_sets: Sequence[Sequence[str]], names: Sequence[str]) -> np.ndarray:
    """``label_matrix`` without its NONE column: one 0/1 column per category, as scores and rule hits have."""
    return label_matrix(label_sets, names)[:, : len(names)]


def micro_macro_f1(predicted: np.ndarray, gold: np.ndarray) -> float:
    """Mean of micro F1 and macro F1 of 0/1 decisions; macro over the categories with positives."""
    tp = (predicted.astype(bool) & gold.astype(bool)).sum(axis=0)
    denominator = predicted.sum(axis=0) + gold.sum(axis=0)
    micro = 2 * tp.sum() / max(denominator.sum(), 1)
    present = gold.sum(axis=0) > 0
    macro = float(np.mean(2 * tp[present] / denominator[present])) if present.any() else 0.0
    return float((micro + macro) / 2)

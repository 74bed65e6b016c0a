"""The hybrid classifier: the student's scores and the task's rule hits, stacked per category.

A rule list written from the guideline is precise on wording it knows (ETOH, MMSE, "lives
with") and blind elsewhere; the student generalises but misses rare shorthand. Stacking
lets held-out data decide, per category, how much each is worth: a logistic regression on
``[logit(student score), rule hit, rule hit x logit]`` fitted on sentences the student
never trained on (gold dev for a saved model, the inner dev inside cross-validation). Its
decision threshold is tuned on cross-fitted probabilities of those same sentences, so the
threshold never sees the fit it applies to. A category with too few held-out positives or
negatives to fit falls back to "student or rule".

The stack is state-only JSON (coefficients, intercepts, thresholds), saved in the model's
``clinsynth.json``; the rule list it was fitted with is copied beside the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clinsynth.rules import RuleSet

MIN_FIT_CLASS = 4  # held-out positives (and negatives) a category needs for a fitted stack
CROSS_FIT_FOLDS = 5
PROBABILITY_GRID = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05))
_CLIP = 1e-4


@dataclass
class CategoryStack:
    """One category's combination: ``mode`` "fit" (logistic regression) or "or" (student or rule)."""

    mode: str
    coef: list[float] | None = None  # logit, hit, hit x logit
    intercept: float = 0.0
    threshold: float = 0.5


def features(scores: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Per category column j: ``[logit(score_j), hit_j, hit_j * logit(score_j)]`` -> shape (n, k, 3)."""
    clipped = np.clip(scores.astype(np.float64), _CLIP, 1 - _CLIP)
    logit = np.log(clipped / (1 - clipped))
    return np.stack([logit, hits, hits * logit], axis=-1)


def _best_threshold(probabilities: np.ndarray, positives: np.ndarray) -> float:
    """The grid threshold with the best F1; ties go to the one closest to 0.5."""
    best = (-1.0, 0.0, 0.5)
    for t in PROBABILITY_GRID:
        predicted = probabilities >= t
        tp = int((predicted & positives).sum())
        f1 = 2 * tp / max(int(predicted.sum() + positives.sum()), 1)
        best = max(best, (round(f1, 9), -abs(t - 0.5), t))
    return float(best[2])


def _fit_category(x: np.ndarray, y: np.ndarray, seed: int) -> CategoryStack:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if min(positives, negatives) < MIN_FIT_CLASS:
        return CategoryStack(mode="or")

    def model() -> LogisticRegression:
        return LogisticRegression(C=1.0, max_iter=1000)

    # Cross-fitted probabilities pick the threshold, so it is not tuned on the fit it applies to.
    out_of_fold = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=min(CROSS_FIT_FOLDS, positives, negatives), shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(x, y):
        if len(set(y[train_idx].tolist())) < 2:
            return CategoryStack(mode="or")
        out_of_fold[test_idx] = model().fit(x[train_idx], y[train_idx]).predict_proba(x[test_idx])[:, 1]
    fitted = model().fit(x, y)
    return CategoryStack(
        mode="fit",
        coef=[round(float(c), 6) for c in fitted.coef_[0]],
        intercept=round(float(fitted.intercept_[0]), 6),
        threshold=_best_threshold(out_of_fold, y.astype(bool)),
    )


@dataclass
class RuleStack:
    """Per-category stacks over the student's scores and the rule list's hits."""

    categories: dict[str, CategoryStack]

    @classmethod
    def fit(cls, names: Sequence[str], scores: np.ndarray, hits: np.ndarray, gold: np.ndarray,
            seed: int = 0) -> RuleStack:  # fmt: skip
        """``scores`` and ``hits``: held-out sentences x categories; ``gold``: their 0/1 labels."""
        x = features(scores, hits)
        return cls({n: _fit_category(x[:, j, :], gold[:, j].astype(int), seed) for j, n in enumerate(names)})

    def decide(self, names: Sequence[str], scores: np.ndarray, hits: np.ndarray,
               student_thresholds: dict[str, float]) -> np.ndarray:  # fmt: skip
        """0/1 decisions (sentences x categories)."""
        x = features(scores, hits)
        out = np.zeros(scores.shape, dtype=bool)
        for j, name in enumerate(names):
            stack = self.categories[name]
            if stack.mode == "fit":
                assert stack.coef is not None
                logit = x[:, j, :] @ np.asarray(stack.coef) + stack.intercept
                out[:, j] = 1 / (1 + np.exp(-logit)) >= stack.threshold
            else:
                out[:, j] = (scores[:, j] >= student_thresholds.get(name, 0.5)) | (hits[:, j] > 0)
        return out

    def predict(self, names: Sequence[str], scores: np.ndarray, texts: Sequence[str], rules: RuleSet,
                student_thresholds: dict[str, float]) -> list[list[str]]:  # fmt: skip
        decided = self.decide(names, scores, rules.hit_matrix(texts, names), student_thresholds)
        return [[n for n, hit in zip(names, row, strict=True) if hit] for row in decided]

    def state(self) -> dict[str, Any]:
        return {n: asdict(s) for n, s in self.categories.items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleStack:
        return cls({n: CategoryStack(**s) for n, s in state.items()})

    def describe(self) -> dict[str, str]:
        """Per category, in words: how the stack weighs the student and the rule."""
        words = {}
        for name, s in self.categories.items():
            if s.mode == "or":
                words[name] = "student or rule (too few held-out examples to fit)"
            else:
                assert s.coef is not None
                words[name] = f"LR: logit x{s.coef[0]:+.2f}, rule {s.coef[1]:+.2f}, rule x logit {s.coef[2]:+.2f}; " \
                              f"threshold {s.threshold:.2f}"  # fmt: skip
        return words

"""The hybrid classifier: the task's rule list, widened by the student where it is confident.

A rule list written from the guideline is precise on wording it knows (ETOH, MMSE, "lives
with") and blind elsewhere; the student generalises but, trained on a few hundred gold
sentences, adds false positives wherever it is unsure. The hybrid labels a category when
its rule fires, or when the student's score reaches a threshold ``t`` that is higher than
the student's own. What held-out sentences decide (gold dev for a saved model, each fold's
inner dev in cross-validation; never test):

- ``t``: one threshold for all categories, the grid value with the best mean of micro and
  macro F1 on the held-out sentences. Pooling over categories is deliberate: a fold's inner
  dev has a few positives of the rare categories, too few to tune a threshold each.
- per category, whether the rule is used: a rule that fired at least ``MIN_RULE_HITS``
  times on the held-out sentences with precision under ``MIN_RULE_PRECISION`` is dropped
  for that category (the student alone decides it).

Chosen by cross-validation over a per-category logistic regression on
``[logit(score), rule hit]`` (fitted on the same inner dev): with ~100 held-out sentences
that stack was worse than the rule list alone on AD (seed 0, gold students: micro 0.693 /
macro 0.636 against 0.744 / 0.692), this one better (0.767 / 0.711).

The state is JSON (``threshold``, ``use_rule`` per category), saved in the model's
``clinsynth.json``; the rule list it was fitted with is copied beside the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from clinsynth.data.records import Record
from clinsynth.data.rules import RuleSet
from clinsynth.model.metrics import category_matrix, micro_macro_f1

THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.3, 0.96, 0.05))
MIN_RULE_HITS = 5
MIN_RULE_PRECISION = 0.5


@dataclass
class RuleStack:
    """Rule hit or confident student: ``threshold`` for the student, ``use_rule`` per category."""

    threshold: float
    use_rule: dict[str, bool]

    @classmethod
    def fit(cls, names: Sequence[str], scores: np.ndarray, hits: np.ndarray, gold: np.ndarray) -> RuleStack:
        """``scores`` and ``hits``: held-out sentences x categories; ``gold``: their 0/1 labels."""
        gold = gold.astype(bool)
        fired = hits > 0
        use_rule = {}
        for j, name in enumerate(names):
            n_hits = int(fired[:, j].sum())
            precision = float((fired[:, j] & gold[:, j]).sum()) / n_hits if n_hits else 1.0
            use_rule[name] = not (n_hits >= MIN_RULE_HITS and precision < MIN_RULE_PRECISION)
        mask = np.asarray([use_rule[n] for n in names])
        # Ties go to the higher threshold: the student adds as little as the data allows.
        best = max(THRESHOLD_GRID, key=lambda t: (round(micro_macro_f1((fired & mask) | (scores >= t), gold), 9), t))
        return cls(threshold=float(best), use_rule=use_rule)

    @classmethod
    def fit_held_out(cls, names: Sequence[str], scores: np.ndarray, held_out: Sequence[Record],
                     rules: RuleSet) -> RuleStack:  # fmt: skip
        """``fit`` on records the student did not train on, given its ``scores`` for them."""
        texts = [r.text for r in held_out]
        gold = category_matrix([r.labels for r in held_out], names)
        return cls.fit(names, scores, rules.hit_matrix(texts, names), gold)

    def decide(self, names: Sequence[str], scores: np.ndarray, hits: np.ndarray) -> np.ndarray:
        """0/1 decisions (sentences x categories)."""
        mask = np.asarray([self.use_rule.get(n, True) for n in names])
        return ((hits > 0) & mask) | (scores >= self.threshold)

    def predict(self, names: Sequence[str], scores: np.ndarray, texts: Sequence[str],
                rules: RuleSet) -> list[list[str]]:  # fmt: skip
        decided = self.decide(names, scores, rules.hit_matrix(texts, names))
        return [[n for n, hit in zip(names, row, strict=True) if hit] for row in decided]

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleStack:
        return cls(threshold=float(state["threshold"]), use_rule=dict(state["use_rule"]))

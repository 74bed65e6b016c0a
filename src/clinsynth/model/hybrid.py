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

The student's additions stay inside the rule list's scope (``respect_scope``): it does not
label a category the list calls out of scope for the sentence (``RuleSet.out_of_scope``: a cue
of it negated or someone else's, or a relative's or hypothetical wording the category does not
keep), the guideline's subject rules applied to the student too. Chosen by cross-validation
(``python -m evals.run combiners [--task tasks/sdoh]``, 3 folds x 3 seeds, against the same
stack without it): AD gold+bronze students micro +0.001 [-0.005, +0.007], macro +0.007 [+0.001,
+0.015]; SDoH gold+bronze +0.007 [-0.001, +0.018] / +0.011 [+0.001, +0.025]; gold students
within +-0.001 on both tasks; worse nowhere.

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


def rule_use(names: Sequence[str], hits: np.ndarray, gold: np.ndarray) -> dict[str, bool]:
    """Per category, whether its rule is kept: dropped when it fired at least ``MIN_RULE_HITS`` times
    on the held-out sentences with precision under ``MIN_RULE_PRECISION``."""
    fired, gold = hits > 0, gold.astype(bool)
    use_rule = {}
    for j, name in enumerate(names):
        n_hits = int(fired[:, j].sum())
        precision = float((fired[:, j] & gold[:, j]).sum()) / n_hits if n_hits else 1.0
        use_rule[name] = not (n_hits >= MIN_RULE_HITS and precision < MIN_RULE_PRECISION)
    return use_rule


def best_threshold(names: Sequence[str], scores: np.ndarray, hits: np.ndarray, gold: np.ndarray,
                   use_rule: dict[str, bool], out_of_scope: np.ndarray | None = None) -> float:  # fmt: skip
    """The grid threshold with the best mean of micro and macro F1 of the stack on these sentences."""
    fired = (hits > 0) & np.asarray([use_rule[n] for n in names])
    allowed = np.ones_like(fired) if out_of_scope is None else ~out_of_scope
    gold = gold.astype(bool)

    # Ties go to the higher threshold: the student adds as little as the data allows.
    def score(t: float) -> tuple[float, float]:
        return round(micro_macro_f1(fired | ((scores >= t) & allowed), gold), 9), t

    return float(max(THRESHOLD_GRID, key=score))


@dataclass
class RuleStack:
    """Rule hit or confident student: ``threshold`` for the student, ``use_rule`` per category,
    ``respect_scope``: the student adds nothing the rule list calls out of scope."""

    threshold: float
    use_rule: dict[str, bool]
    respect_scope: bool = True

    @classmethod
    def fit(cls, names: Sequence[str], scores: np.ndarray, hits: np.ndarray, gold: np.ndarray,
            out_of_scope: np.ndarray | None = None) -> RuleStack:  # fmt: skip
        """``scores``, ``hits`` and ``out_of_scope``: held-out sentences x categories; ``gold``: their
        0/1 labels. Without ``out_of_scope`` the student is not kept to the rules' scope."""
        use_rule = rule_use(names, hits, gold)
        threshold = best_threshold(names, scores, hits, gold, use_rule, out_of_scope)
        return cls(threshold=threshold, use_rule=use_rule, respect_scope=out_of_scope is not None)

    @classmethod
    def fit_held_out(cls, names: Sequence[str], scores: np.ndarray, held_out: Sequence[Record],
                     rules: RuleSet) -> RuleStack:  # fmt: skip
        """``fit`` on records the student did not train on, given its ``scores`` for them."""
        texts = [r.text for r in held_out]
        gold = category_matrix([r.labels for r in held_out], names)
        hits, out_of_scope = rules.scope_matrices(texts, names)
        return cls.fit(names, scores, hits, gold, out_of_scope)

    def decide(self, names: Sequence[str], scores: np.ndarray, hits: np.ndarray,
               out_of_scope: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """0/1 decisions (sentences x categories); ``out_of_scope`` is needed when ``respect_scope``."""
        mask = np.asarray([self.use_rule.get(n, True) for n in names])
        student = scores >= self.threshold
        if self.respect_scope:
            if out_of_scope is None:
                raise ValueError("this stack keeps the student to the rules' scope: pass out_of_scope")
            student &= ~out_of_scope
        return ((hits > 0) & mask) | student

    def predict(self, names: Sequence[str], scores: np.ndarray, texts: Sequence[str],
                rules: RuleSet) -> list[list[str]]:  # fmt: skip
        if self.respect_scope:
            hits, blocked = rules.scope_matrices(texts, names)
            decided = self.decide(names, scores, hits, blocked)
        else:
            decided = self.decide(names, scores, rules.hit_matrix(texts, names))
        return [[n for n, hit in zip(names, row, strict=True) if hit] for row in decided]

    def state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RuleStack:
        # A model saved before ``respect_scope`` existed was fitted without it.
        return cls(threshold=float(state["threshold"]), use_rule=dict(state["use_rule"]),
                   respect_scope=bool(state.get("respect_scope", False)))  # fmt: skip

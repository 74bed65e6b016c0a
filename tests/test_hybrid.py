"""The hybrid: student scores and rule hits stacked per category, fitted on held-out sentences."""

from __future__ import annotations

import numpy as np

from clinsynth.hybrid import MIN_FIT_CLASS, RuleStack


def held_out(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Category A: the rule is precise and catches what the student misses; B: the rule is noise."""
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 2)) < 0.3).astype(int)
    scores = np.clip(0.35 * gold + rng.normal(0.3, 0.15, (n, 2)), 0.01, 0.99)
    hits = np.zeros((n, 2))
    hits[:, 0] = gold[:, 0] * (rng.random(n) < 0.8)  # A: 80% recall, no false hits
    hits[:, 1] = rng.random(n) < 0.3  # B: unrelated to the label
    return scores, hits, gold


def f1(predicted: np.ndarray, gold: np.ndarray) -> float:
    tp = int((predicted & gold.astype(bool)).sum())
    return 2 * tp / max(int(predicted.sum() + gold.sum()), 1)


def test_the_stack_uses_a_precise_rule_and_ignores_a_noisy_one():
    scores, hits, gold = held_out(seed=0)
    stack = RuleStack.fit(["A", "B"], scores, hits, gold)
    assert stack.categories["A"].mode == "fit" and stack.categories["B"].mode == "fit"
    assert stack.categories["A"].coef[1] > 1.0  # the precise rule carries weight
    assert abs(stack.categories["B"].coef[1]) < stack.categories["A"].coef[1] / 2
    new_scores, new_hits, new_gold = held_out(seed=1)  # fresh sentences
    decided = stack.decide(["A", "B"], new_scores, new_hits, {"A": 0.5, "B": 0.5})
    student = new_scores >= 0.5
    rule = new_hits > 0
    assert f1(decided[:, 0], new_gold[:, 0]) > max(f1(student[:, 0], new_gold[:, 0]), f1(rule[:, 0], new_gold[:, 0]))
    assert f1(decided[:, 1], new_gold[:, 1]) > f1(rule[:, 1], new_gold[:, 1])


def test_too_few_held_out_positives_fall_back_to_student_or_rule_and_state_round_trips():
    scores, hits, gold = held_out(n=40)
    gold[:, 1] = 0
    gold[: MIN_FIT_CLASS - 1, 1] = 1
    stack = RuleStack.fit(["A", "B"], scores, hits, gold)
    assert stack.categories["B"].mode == "or"
    again = RuleStack.from_state(stack.state())
    assert again == stack
    decided = again.decide(["A", "B"], np.asarray([[0.1, 0.1], [0.1, 0.9]]), np.asarray([[0, 1], [0, 0]]),
                           {"A": 0.5, "B": 0.5})  # fmt: skip
    assert decided[:, 1].tolist() == [True, True]  # the rule alone, the student alone

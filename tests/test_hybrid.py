"""The hybrid: a rule hit, or a student score at a threshold tuned on held-out sentences."""

from __future__ import annotations

import numpy as np
import pytest

from clinsynth.model.hybrid import MIN_RULE_HITS, RuleStack
from clinsynth.model.metrics import micro_macro_f1 as micro_macro


def held_out(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A: a precise rule with 60% recall, a student that is confident on some positives and noisy
    below; B: a rule that fires at random."""
    rng = np.random.default_rng(seed)
    gold = (rng.random((n, 2)) < 0.3).astype(int)
    scores = np.clip(rng.normal(0.45, 0.2, (n, 2)) + 0.35 * gold * (rng.random((n, 2)) < 0.6), 0.0, 1.0)
    hits = np.zeros((n, 2))
    hits[:, 0] = gold[:, 0] * (rng.random(n) < 0.6)
    hits[:, 1] = rng.random(n) < 0.3
    return scores, hits, gold


def test_the_stack_beats_rule_and_student_alone_on_fresh_sentences_and_drops_a_noisy_rule():
    scores, hits, gold = held_out(seed=0)
    stack = RuleStack.fit(["A", "B"], scores, hits, gold)
    assert stack.use_rule == {"A": True, "B": False}  # B's rule: precision ~0.3 on held-out
    assert 0.5 < stack.threshold < 0.95
    fresh_scores, fresh_hits, fresh_gold = held_out(seed=1)
    hybrid = micro_macro(stack.decide(["A", "B"], fresh_scores, fresh_hits), fresh_gold)
    rules = micro_macro(fresh_hits > 0, fresh_gold)
    student = micro_macro(fresh_scores >= 0.5, fresh_gold)
    assert hybrid > rules and hybrid > student


def test_a_rule_with_few_held_out_hits_is_kept_and_the_state_round_trips():
    scores, hits, gold = held_out(n=60)
    hits[:, 1] = 0
    hits[: MIN_RULE_HITS - 1, 1] = 1  # four hits, all wrong: too few to judge the rule
    gold[: MIN_RULE_HITS - 1, 1] = 0
    stack = RuleStack.fit(["A", "B"], scores, hits, gold)
    assert stack.use_rule["B"] is True
    again = RuleStack.from_state(stack.state())
    assert again == stack
    decided = again.decide(["A", "B"], np.asarray([[0.0, 0.0], [0.99, 0.0]]), np.asarray([[0, 1], [0, 0]]))
    assert decided.tolist() == [[False, True], [True, False]]  # the rule alone, the student alone


def test_a_stack_kept_to_the_rules_scope_adds_nothing_out_of_scope_and_keeps_rule_hits():
    scores, hits, gold = held_out(seed=2)
    out_of_scope = np.zeros_like(gold, dtype=bool)
    out_of_scope[::3, 1] = True  # every third sentence is, say, about a relative for B
    gold[::3, 1] = 0  # and the guideline does not label it
    stack = RuleStack.fit(["A", "B"], scores, hits, gold, out_of_scope)
    assert stack.respect_scope is True
    confident = np.full((2, 2), 0.99)
    blocked = np.asarray([[False, True], [False, False]])
    decided = stack.decide(["A", "B"], confident, np.asarray([[0, 0], [0, 0]]), blocked)
    assert decided.tolist() == [[True, False], [True, True]]
    ruled = stack.decide(["A", "B"], np.zeros((1, 2)), np.asarray([[1, 0]]), np.asarray([[True, True]]))
    assert ruled.tolist() == [[True, False]]  # a rule hit is the rule list's call, not the scope's
    with pytest.raises(ValueError, match="out_of_scope"):
        stack.decide(["A", "B"], confident, np.zeros((2, 2)))
    assert RuleStack.from_state(stack.state()) == stack
    older = {k: v for k, v in stack.state().items() if k != "respect_scope"}  # saved before the field
    assert RuleStack.from_state(older).respect_scope is False

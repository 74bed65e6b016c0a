import math

import pytest

from clinsynth.llm.confidence import agreement, answer_probability


def _logprobs(pieces: list[tuple[str, float]]) -> dict:
    return {"content": [{"token": t, "logprob": lp} for t, lp in pieces]}


def test_answer_probability_counts_only_the_field_value_not_the_formatting():
    tokens = [
        ("```", math.log(0.5)),  # formatting: ignored
        ("json\n{", 0.0),
        ('"categories"', 0.0),
        (": ", 0.0),
        ('["', math.log(0.9)),
        ("DIAG", math.log(0.8)),
        ('NOSIS"]', 0.0),
        ("\n}", math.log(0.1)),  # after the value: ignored
    ]
    assert answer_probability(_logprobs(tokens), "categories") == pytest.approx(0.9 * 0.8)


def test_answer_probability_is_none_without_logprobs_or_field():
    assert answer_probability(None, "categories") is None
    assert answer_probability(_logprobs([('{"other": 1}', 0.0)]), "categories") is None


def test_agreement_is_the_share_of_samples_equal_to_the_first():
    assert agreement([["A"], ["A"], ["B"], None]) == 0.5
    assert agreement([[], []]) == 1.0
    assert agreement([None, ["A"]]) == 0.0

"""Confidence of an LM's label answer, from token logprobs or from agreement of samples.

``answer_probability`` is the probability the model gave to the exact value it wrote
for one JSON field (the product of the token probabilities inside that value), so the
formatting tokens around it (code fences, braces, whitespace) do not count. It is free:
the server returns logprobs with the answer. ``agreement`` is the fraction of k sampled
answers equal to the first one; it works with any endpoint at k times the cost.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any


def _tokens(logprobs: Any) -> list[tuple[str, float]]:
    content = logprobs.get("content") if isinstance(logprobs, dict) else getattr(logprobs, "content", None)
    out = []
    for entry in content or []:
        token = entry.get("token") if isinstance(entry, dict) else getattr(entry, "token", None)
        logprob = entry.get("logprob") if isinstance(entry, dict) else getattr(entry, "logprob", None)
        if token is not None and logprob is not None:
            out.append((token, float(logprob)))
    return out


def answer_probability(logprobs: Any, field: str) -> float | None:
    """Probability of the value written for JSON ``field``; None if it cannot be located."""
    tokens = _tokens(logprobs)
    if not tokens:
        return None
    text = "".join(t for t, _ in tokens)
    match = re.search(rf'"{re.escape(field)}"\s*:\s*(\[[^\]]*\]|"(?:[^"\\]|\\.)*"|[^,}}\s]+)', text)
    if match is None:
        return None
    start, end = match.span(1)
    total, pos = 0.0, 0
    for token, logprob in tokens:
        token_start, pos = pos, pos + len(token)
        if pos > start and token_start < end and token.strip():
            total += logprob
    return math.exp(total)


def agreement(answers: Sequence[Sequence[str] | None]) -> float:
    """Fraction of answers whose label set equals the first one's (failed samples disagree)."""
    if not answers or answers[0] is None:
        return 0.0
    first = set(answers[0])
    return sum(a is not None and set(a) == first for a in answers) / len(answers)

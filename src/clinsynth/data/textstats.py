"""Text measures shared by the bronze filters and the bronze-quality suite."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped), for n-gram overlap and distinct-n."""
    return _TOKEN_RE.findall(text.lower())


def normalise(text: str) -> str:
    """The exact-duplicate key: lower case, words only."""
    return " ".join(tokens(text))


def ngrams(words: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al. 2016); 0 for no n-grams."""
    total, seen = 0, set()
    for text in texts:
        words = tokens(text)
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0

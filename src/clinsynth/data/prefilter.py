"""Relevance prefilter: pick the corpus sentences worth sending to an LLM labeller.

Most sentences of clinical notes show no sign of the taxonomy's categories; labelling
all of them spends the LM on NONE. The prefilter scores every sentence by its highest
cosine similarity to the category queries, built from the taxonomy file (definition,
include rules and positive examples), minus its similarity to the typical sentence of
the pool (the normalised centroid). Without that contrast, routine sentences about "the
patient" ("The patient was brought to the recovery room") rank high on MiniLM. It keeps
the top-scored sentences and mixes in a random sample of the rest as negatives, so the
silver set still teaches NONE.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from clinsynth.data.records import InputItem
from clinsynth.data.taxonomy import Taxonomy

Embed = Callable[[Sequence[str]], np.ndarray]


def category_queries(taxonomy: Taxonomy) -> dict[str, list[str]]:
    """Texts that describe each category, from the taxonomy only."""
    queries = {}
    for c in taxonomy.categories:
        texts = [c.definition, *c.include]
        texts += [ex.text for ex in c.examples if c.name in ex.labels]
        queries[c.name] = texts
    return queries


def relevance_scores(texts: Sequence[str], taxonomy: Taxonomy, embed: Embed) -> tuple[np.ndarray, list[str]]:
    """Per text: max cosine to any category query minus cosine to the pool's centroid, and that category."""
    queries = category_queries(taxonomy)
    names = [name for name, qs in queries.items() for _ in qs]
    query_vectors = embed([q for qs in queries.values() for q in qs])
    vectors = embed(texts)
    centroid = vectors.mean(axis=0)
    centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
    sims = vectors @ query_vectors.T
    best = sims.argmax(axis=1)
    return sims.max(axis=1) - vectors @ centroid, [names[i] for i in best]


@dataclass(frozen=True)
class Selection:
    items: list[InputItem]
    scores: dict[str, float]  # id -> relevance score
    nearest: dict[str, str]  # id -> category whose query scored it
    relevant: frozenset[str]  # ids chosen by score (the rest are sampled negatives)


def select(
    items: Sequence[InputItem],
    taxonomy: Taxonomy,
    n: int,
    embed: Embed,
    negative_fraction: float = 0.2,
    seed: int = 0,
) -> Selection:
    """``n`` items: the top ``(1 - negative_fraction) * n`` by relevance plus random others.

    The result is shuffled with ``seed`` (so a ``--limit`` prefix is still a mix) and is
    stable for a given corpus, taxonomy and seed, which a resumed run relies on.
    """
    if not 0 <= negative_fraction <= 1:
        raise ValueError("negative_fraction must be between 0 and 1")
    scores, nearest = relevance_scores([i.text for i in items], taxonomy, embed)
    order = np.argsort(-scores, kind="stable")
    n = min(n, len(items))
    n_top = round(n * (1 - negative_fraction))
    top = [int(i) for i in order[:n_top]]
    rest = [int(i) for i in order[n_top:]]
    rng = random.Random(seed)
    negatives = rng.sample(rest, min(n - n_top, len(rest)))
    chosen = top + negatives
    rng.shuffle(chosen)
    return Selection(
        items=[items[i] for i in chosen],
        scores={items[i].id: float(scores[i]) for i in chosen},
        nearest={items[i].id: nearest[i] for i in chosen},
        relevant=frozenset(items[i].id for i in top),
    )

"""Quality filters for generated (bronze) sentences, each one counted.

Order (cheap first, the LM round trip last, so only survivors cost LM time): PHI scan,
exact duplicates, echoes of the call's own request, leakage against gold, near duplicates, the guideline's subject rule
(with the task's rule list: a positive label whose every cue is about someone else), then
the round trip (in ``programs.generate``). Every filter returns the
kept candidates and the dropped ones with a reason, so the report can count them per target.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinsynth.data.phi import scan
from clinsynth.data.textstats import ngrams, normalise, tokens

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> L2-normalised rows

PHI = "phi"
EXACT_DUPLICATE = "exact_duplicate"
ECHO = "echo"
LEAKAGE = "leakage"
NEAR_DUPLICATE = "near_duplicate"
SUBJECT = "subject"
ROUND_TRIP = "round_trip"
ROUND_TRIP_FAILED = "round_trip_failed"
OVER_QUOTA = "over_quota"
# On demand, after generation (programs.generate --drop-label-issues): a label the set contradicts.
LABEL_ISSUE = "label_issue"
FILTERS = (PHI, EXACT_DUPLICATE, ECHO, LEAKAGE, NEAR_DUPLICATE, SUBJECT, ROUND_TRIP, ROUND_TRIP_FAILED)
# The scope that makes a cue someone else's (clinsynth.data.rules): the guideline's subject rule.
SUBJECT_SCOPES = ("other_person",)

# The filters' thresholds, used by the bronze step, its CLI and the generator's compile metric.
NEAR_DUPLICATE_COSINE = 0.9  # same label set, cosine at or above: a near duplicate
LEAK_COSINE = 0.95  # cosine to a gold sentence at or above: a leak
LEAK_NGRAM = 8  # a shared word n-gram of this length with gold: a leak
ECHO_NGRAM = 5  # a shared word n-gram of this length with the call's own request: an echo
# Words of the request's scaffolding that a clinical sentence does not use: a sentence with
# one talks about the request ("... written with the shorthand 'EtOH'").
ECHO_WORDS = ("shorthand", "category", "categories", "each sentence")


@dataclass
class Candidate:
    """A generated sentence on its way through the filters."""

    id: str
    text: str
    target: str
    labels: tuple[str, ...]
    call_id: str
    info: dict[str, Any] = field(default_factory=dict)  # what filters learnt (nearest gold, round trip...)


@dataclass
class Dropped:
    candidate: Candidate
    filter: str
    detail: str


def phi_filter(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Dropped]]:
    kept, dropped = [], []
    for c in candidates:
        hits = scan(c.text)
        if hits:
            dropped.append(Dropped(c, PHI, ", ".join(f"{h.kind}: {h.text}" for h in hits)))
        else:
            kept.append(c)
    return kept, dropped


def exact_dedup(candidates: Sequence[Candidate]) -> tuple[list[Candidate], list[Dropped]]:
    """Keep the first of sentences equal up to case and punctuation."""
    kept, dropped, seen = [], [], {}
    for c in candidates:
        key = normalise(c.text)
        if key in seen:
            dropped.append(Dropped(c, EXACT_DUPLICATE, f"same as {seen[key]}"))
        else:
            seen[key] = c.id
            kept.append(c)
    return kept, dropped


def echo_filter(candidates: Sequence[Candidate], requests: Mapping[str, str],
                ngram: int = ECHO_NGRAM) -> tuple[list[Candidate], list[Dropped]]:  # fmt: skip
    """Drop a sentence that repeats its request instead of writing a note: a run of ``ngram``
    words of its call's request text (``requests``: call id -> target and constraints; a
    small model copies the definition or the focus), or a word of the request's scaffolding."""
    kept, dropped = [], []
    grams = {call_id: ngrams(tokens(text), ngram) for call_id, text in requests.items()}
    for c in candidates:
        lowered = c.text.lower()
        word = next((w for w in ECHO_WORDS if re.search(rf"\b{w}\b", lowered)), None)
        common = ngrams(tokens(c.text), ngram) & grams.get(c.call_id, set())
        if word or common:
            why = f"says '{word}'" if word else f"repeats its request: '{' '.join(sorted(common)[0])}'"
            dropped.append(Dropped(c, ECHO, why))
        else:
            kept.append(c)
    return kept, dropped


@dataclass
class LeakageAudit:
    """Nearest gold sentence of each candidate, by cosine, and shared n-grams."""

    cosine_threshold: float
    ngram: int
    nearest: dict[str, tuple[float, str]]  # candidate id -> (cosine, gold text)
    shared: dict[str, str]  # candidate id -> first shared n-gram

    def is_leak(self, candidate_id: str) -> bool:
        return self.nearest[candidate_id][0] >= self.cosine_threshold or candidate_id in self.shared


def audit_leakage(
    candidates: Sequence[Candidate],
    gold_texts: Sequence[str],
    embed: Embed,
    cosine_threshold: float = LEAK_COSINE,
    ngram: int = LEAK_NGRAM,
) -> LeakageAudit:
    gold_grams: set[tuple[str, ...]] = set()
    for text in gold_texts:
        gold_grams |= ngrams(tokens(text), ngram)
    nearest: dict[str, tuple[float, str]] = {}
    shared: dict[str, str] = {}
    if candidates and gold_texts:
        sims = embed([c.text for c in candidates]) @ embed(list(gold_texts)).T
        best = sims.argmax(axis=1)
        for row, c in enumerate(candidates):
            nearest[c.id] = (float(sims[row, best[row]]), gold_texts[int(best[row])])
    for c in candidates:
        nearest.setdefault(c.id, (0.0, ""))
        common = ngrams(tokens(c.text), ngram) & gold_grams
        if common:
            shared[c.id] = " ".join(sorted(common)[0])
    return LeakageAudit(cosine_threshold, ngram, nearest, shared)


def leakage_filter(candidates: Sequence[Candidate], audit: LeakageAudit) -> tuple[list[Candidate], list[Dropped]]:
    kept, dropped = [], []
    for c in candidates:
        cosine, gold = audit.nearest[c.id]
        c.info["nearest_gold_cosine"] = round(cosine, 4)
        if audit.is_leak(c.id):
            why = f"shares '{audit.shared[c.id]}'" if c.id in audit.shared else f"cosine {cosine:.3f}"
            dropped.append(Dropped(c, LEAKAGE, f"{why} with gold: {gold}"))
        else:
            kept.append(c)
    return kept, dropped


def near_dedup(
    candidates: Sequence[Candidate], embed: Embed, threshold: float = NEAR_DUPLICATE_COSINE
) -> tuple[list[Candidate], list[Dropped]]:
    """Greedy: drop a sentence whose cosine to an earlier kept one of the same label set is >= threshold.

    Compared within a label set only: "denies memory loss" next to "reports memory loss"
    is a useful contrast, not a duplicate.
    """
    if not candidates:
        return [], []
    vectors = embed([c.text for c in candidates])
    kept: list[Candidate] = []
    kept_rows: dict[tuple[str, ...], list[int]] = {}
    dropped = []
    for row, c in enumerate(candidates):
        rows = kept_rows.setdefault(c.labels, [])
        if rows:
            sims = vectors[rows] @ vectors[row]
            j = int(sims.argmax())
            if sims[j] >= threshold:
                dropped.append(Dropped(c, NEAR_DUPLICATE, f"cosine {sims[j]:.3f} to: {candidates[rows[j]].text}"))
                continue
        rows.append(row)
        kept.append(c)
    return kept, dropped


def subject_violations(text: str, labels: Sequence[str], rules: Any) -> list[tuple[str, str]]:
    """(category, scope) for each label whose cues in ``text`` are all about someone else by the
    rule list: "Her husband smokes." labelled TOBACCO breaks the guideline."""
    out = []
    for scope in SUBJECT_SCOPES:
        out += [(c, scope) for c in rules.blocked(text, scope) if c in labels]
    return out


def subject_detail(broken: Sequence[tuple[str, str]]) -> str:
    return "; ".join(f"{category}: cue is {scope.replace('_', ' ')}" for category, scope in broken)


def standing_drops(candidates: Sequence[Candidate], earlier: Mapping[str, str],
                   filter_name: str) -> tuple[list[Candidate], list[Dropped]]:  # fmt: skip
    """Candidates an on-demand step dropped from the set before (id -> why) stay dropped when a
    generation run rebuilds the set from its calls file."""
    kept, dropped = [], []
    for c in candidates:
        if c.id in earlier:
            dropped.append(Dropped(c, filter_name, earlier[c.id]))
        else:
            kept.append(c)
    return kept, dropped


def subject_filter(candidates: Sequence[Candidate], rules: Any) -> tuple[list[Candidate], list[Dropped]]:
    kept, dropped = [], []
    for c in candidates:
        broken = subject_violations(c.text, c.labels, rules)
        if broken:
            dropped.append(Dropped(c, SUBJECT, subject_detail(broken)))
        else:
            kept.append(c)
    return kept, dropped


def round_trip_agrees(target_labels: Sequence[str], predicted: Sequence[str]) -> bool:
    """The labeller finds every target category (or, for a NONE target, none at all)."""
    if not target_labels:
        return not predicted
    return set(target_labels) <= set(predicted)

"""Reference classifiers the SetFit model must beat: a keyword lexicon and TF-IDF + LR.

The lexicon is built from the taxonomy file alone (no training data): the terms listed
in each category's definition and its generation aspects, matched as whole words, with
a NegEx-style rule that skips a term preceded by a negation cue in the same clause.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clinsynth.data.records import Record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.model.classifier import tune_thresholds
from clinsynth.model.metrics import category_matrix, label_matrix

NEGATION_CUES = re.compile(r"\b(no|not|denies|denied|without|negative for|never|free of|absence of)\b", re.I)
CLAUSE_BREAK = re.compile(r"[.;:]|\bbut\b", re.I)
_PAREN = re.compile(r"\(([^)]*)\)")
# Words that appear in the lists but say nothing specific alone.
_GENERIC = {
    *"change changes patient others function report reported observed concern place stories done".split(),
    *"started continued stopped help medications eating imaging vascular unspecified language".split(),
    *"insight naming hearing vision smell urinary behaviour friend caregiver residence".split(),
}
_FILLER = re.compile(r"^(a|an|the|some|as a|by|in|of)\s+|\s+(in|of|ones|for one|by stage)$")


def _terms(text: str) -> list[str]:
    """Comma/semicolon-separated items of a definition list, parentheses as alternatives."""
    text = text.replace(" or ", ", ").replace(" and ", ", ")
    alternatives = _PAREN.findall(text)
    text = _PAREN.sub(",", text)
    if ":" in text:
        text = text.split(":", 1)[1]
    items = re.split(r"[,;/]", ", ".join([text, *alternatives]))
    out = []
    for item in items:
        term = re.sub(r"[^a-z0-9' -]", " ", item.lower()).strip(" -'")
        term = _FILLER.sub("", re.sub(r"\s+", " ", term)).strip()
        if len(term) >= 3 and term not in _GENERIC and len(term.split()) <= 4:
            out.append(term)
    return out


@dataclass
class KeywordLexicon:
    """Whole-word term lists per category; ``predict`` returns label sets."""

    terms: dict[str, list[str]]

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy) -> KeywordLexicon:
        terms: dict[str, list[str]] = {}
        for category in taxonomy.categories:
            found = _terms(category.definition)
            for aspect in category.generation.aspects:
                found.extend(_terms(aspect))
            terms[category.name] = sorted(set(found), key=lambda t: (-len(t), t))
        return cls(terms)

    def _matches(self, sentence: str, term: str) -> bool:
        for hit in re.finditer(rf"\b{re.escape(term)}\b", sentence, re.I):
            clause = CLAUSE_BREAK.split(sentence[: hit.start()])[-1]
            if not NEGATION_CUES.search(clause):
                return True
        return False

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        return [
            [name for name, terms in self.terms.items() if any(self._matches(t, term) for term in terms)] for t in texts
        ]


class TfidfLogReg:
    """Word 1-2-gram TF-IDF with one balanced logistic regression per category."""

    def __init__(self, names: Sequence[str], seed: int = 0) -> None:
        self.names = list(names)
        self.seed = seed
        self.thresholds = {n: 0.5 for n in self.names}

    def fit(self, train: Sequence[Record], dev: Sequence[Record] | None = None) -> TfidfLogReg:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.multiclass import OneVsRestClassifier

        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, lowercase=True)
        x = self.vectorizer.fit_transform([r.text for r in train])
        y = category_matrix([r.labels for r in train], self.names)
        # A category absent from train gets a constant "no" column instead of an error.
        self.model = OneVsRestClassifier(
            LogisticRegression(class_weight="balanced", max_iter=2000, C=4.0, random_state=self.seed)
        )
        self.model.fit(x, y)
        if dev:
            gold = label_matrix([r.labels for r in dev], self.names)
            self.thresholds = tune_thresholds(self.scores([r.text for r in dev]), gold, self.names)
        return self

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(self.vectorizer.transform(list(texts))), dtype=np.float32)

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        cut = np.asarray([self.thresholds[n] for n in self.names])
        return [[n for n, hit in zip(self.names, row >= cut, strict=True) if hit] for row in self.scores(texts)]

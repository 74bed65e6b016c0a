"""CategoryCheck: ask an LM whether one sentence documents one category (a second opinion).

A labeller answers nine categories at once; this asks about one, with only that category's
part of the guideline in the prompt, so a small model weighs one definition at a time. The
hybrid's LLM check (``clinsynth.evals.llm_check``) asks it about each category the student
adds beyond the rule list.

``NeighbourCheck`` asks the same question with annotated neighbours in the prompt: per
category, the ``k`` most similar sentences of annotated notes that document it and the ``k``
most similar that do not (retrieved few-shot demos, as DSPy's ``KNNFewShot`` and the
``fewshot-knn`` labeller retrieve them), never from the asked sentence's own note.
Cross-validation measured it against ``CategoryCheck`` (``python -m evals.run llm-check
--neighbours 3``): on AD it was no better, so saved models ask ``CategoryCheck``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dspy
import numpy as np
from clinsynth.signatures.verify_category import VerifyCategory, VerifyCategoryWithNeighbours

from clinsynth.data.records import Record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.llm.confidence import answer_probability

MAX_TOKENS = 20  # {"present": true} is ~6 tokens; the cap stops a rare loop early (it is retried)


class CategoryCheck(dspy.Module):
    """``forward(sentence, category)`` -> ``present`` (bool) and ``confidence`` (token probability or None)."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        super().__init__()
        self.taxonomy = taxonomy
        self.verify = dspy.Predict(VerifyCategory, max_tokens=MAX_TOKENS)

    def forward(self, sentence: str, category: str) -> dspy.Prediction:
        pred = self.verify(general_rules=self.taxonomy.general_rules_text,
                           category=self.taxonomy.category_text(category), sentence=sentence)  # fmt: skip
        # The bool field is parsed by the adapter: a value that is not a bool fails the call (and is retried).
        confidence = answer_probability(getattr(pred, "logprobs", None), "present")
        return dspy.Prediction(present=pred.present, confidence=confidence)


@dataclass
class Neighbours:
    """Annotated sentences to show beside a question, retrieved by similarity of MiniLM embeddings."""

    records: Sequence[Record]  # labelled sentences, each with its note
    k: int = 3  # per category, this many that document it and this many that do not
    vectors: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from clinsynth.model.embeddings import encode

        self.vectors = encode([r.text for r in self.records])

    def shown(self, sentence: str, category: str, note: str | None) -> str:
        """The ``k`` nearest sentences that document ``category`` and the ``k`` nearest that do not, outside
        ``note`` and never the sentence itself, one a line with its answer; the most similar last, nearest
        the question."""
        from clinsynth.model.embeddings import encode

        similarity = self.vectors @ encode([sentence])[0]
        order = np.argsort(-similarity)
        usable = [i for i in order if self.records[i].note_id != note and self.records[i].text != sentence]
        documents = [i for i in usable if category in self.records[i].labels][: self.k]
        other = [i for i in usable if category not in self.records[i].labels][: self.k]
        chosen = sorted(documents + other, key=lambda i: similarity[i])
        return "\n".join(f'- "{self.records[i].text}" -> {"true" if category in self.records[i].labels else "false"}'
                         for i in chosen)  # fmt: skip


class NeighbourCheck(dspy.Module):
    """``CategoryCheck`` with annotated neighbours: ``forward(sentence, category, note)`` -> ``present``
    (``note``: the sentence's own note, whose sentences are not shown)."""

    def __init__(self, taxonomy: Taxonomy, neighbours: Neighbours) -> None:
        super().__init__()
        self.taxonomy = taxonomy
        self.neighbours = neighbours
        self.verify = dspy.Predict(VerifyCategoryWithNeighbours, max_tokens=MAX_TOKENS)

    def forward(self, sentence: str, category: str, note: str | None = None) -> dspy.Prediction:
        pred = self.verify(general_rules=self.taxonomy.general_rules_text,
                           category=self.taxonomy.category_text(category),
                           annotated=self.neighbours.shown(sentence, category, note), sentence=sentence)  # fmt: skip
        return dspy.Prediction(present=pred.present)

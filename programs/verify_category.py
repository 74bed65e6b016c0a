"""CategoryCheck: ask an LM whether one sentence documents one category (a second opinion).

A labeller answers nine categories at once; this asks about one, with only that category's
part of the guideline in the prompt, so a small model weighs one definition at a time. The
hybrid's LLM check (``clinsynth.evals.llm_check``) asks it about each category the student
adds beyond the rule list.
"""

from __future__ import annotations

import dspy
from clinsynth.signatures.verify_category import VerifyCategory

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

"""DataToLabel: label clinical sentences with a taxonomy's categories (the silver direction)."""

from __future__ import annotations

import dspy

from clinsynth.taxonomy import Taxonomy
from signatures.label_sentence import label_sentence_signature


class DataToLabel(dspy.Module):
    """Zero-shot (or compiled) multi-label sentence labeller driven by the guideline text."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        super().__init__()
        self.taxonomy = taxonomy
        self.label = dspy.Predict(label_sentence_signature(taxonomy))

    def forward(self, sentence: str) -> dspy.Prediction:
        pred = self.label(guideline=self.taxonomy.guideline_text, sentence=sentence)
        # Keep guideline order and drop repeats, so equal label sets compare equal.
        return dspy.Prediction(categories=self.taxonomy.canonical(pred.categories))

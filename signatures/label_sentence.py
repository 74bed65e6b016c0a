"""LabelSentence: guideline + sentence -> the set of categories the sentence documents."""

from __future__ import annotations

import dspy

from clinsynth.taxonomy import Taxonomy


class LabelSentence(dspy.Signature):
    """Label one sentence of a clinical note with the guideline categories it documents.

    Apply the guideline strictly: a category counts only when the sentence affirms it for
    the patient. Negated, hypothetical, family-history and normal findings are NONE.
    Return the list of categories; an empty list means NONE.
    """

    guideline: str = dspy.InputField(desc="annotation guideline: categories, definitions, rules")
    sentence: str = dspy.InputField(desc="one sentence of a clinical note")
    # Not named `labels`: dspy.Prediction.labels is a method and would shadow the field.
    categories: list[str] = dspy.OutputField(desc="categories the sentence documents; [] for NONE")


def label_sentence_signature(taxonomy: Taxonomy) -> type[dspy.Signature]:
    """LabelSentence with ``categories`` typed as a list of the taxonomy's names (or NONE)."""
    return LabelSentence.with_updated_fields("categories", type_=taxonomy.label_type(allow_none=True))

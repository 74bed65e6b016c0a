"""LabelSentence: one sentence of a clinical note -> the set of guideline categories it documents."""

from __future__ import annotations

import dspy

from clinsynth.data.taxonomy import Taxonomy


class LabelSentence(dspy.Signature):
    """Label one sentence of a clinical note with the guideline categories it documents.

    Apply the guideline strictly: a category counts only when the sentence affirms it for
    the patient. Negated, hypothetical, family-history and normal findings are NONE.
    Most sentences of a clinical note are NONE.
    """

    sentence: str = dspy.InputField(desc="one sentence of a clinical note")
    # Not named `labels`: dspy.Prediction.labels is a method and would shadow the field.
    categories: list[str] = dspy.OutputField(desc='categories the sentence documents; ["NONE"] if none')


class LabelSentenceWithEvidence(LabelSentence):
    """Label one sentence of a clinical note with the guideline categories it documents.

    Apply the guideline strictly: a category counts only when the sentence affirms it for
    the patient. Negated, hypothetical, family-history and normal findings are NONE.
    Most sentences of a clinical note are NONE. Quote the words that justify the labels.
    """

    evidence: str = dspy.OutputField(desc="the shortest span of the sentence that justifies the labels; '' if NONE")


def label_sentence_signature(taxonomy: Taxonomy, evidence: bool = False) -> type[dspy.Signature]:
    """The signature for ``taxonomy``: its guideline in the instructions, its names as the label type.

    The guideline goes in the instructions (system message), not in an input field, so
    that it is a prefix the server caches once, demos stay short, and an optimizer can
    rewrite it.
    """
    base = LabelSentenceWithEvidence if evidence else LabelSentence
    signature = base.with_updated_fields("categories", type_=taxonomy.label_type(allow_none=True))
    return signature.with_instructions(f"{base.instructions}\n\n{taxonomy.guideline_text}")

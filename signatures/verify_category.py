"""VerifyCategory: one sentence and one guideline category -> does the sentence document it?"""

from __future__ import annotations

import dspy


class VerifyCategory(dspy.Signature):
    """Decide whether one sentence of a clinical note documents one category of the guideline, for the patient.

    Answer true only when the sentence itself affirms the category for the patient, as the
    category's definition says. Negated, hypothetical, family-history, normal and merely
    related findings are false.
    """

    # Inputs in this order so that calls about one category share the longest cached prefix
    # (the general rules, then the category's part of the guideline); only the sentence differs.
    general_rules: str = dspy.InputField(desc="the guideline's general rules")
    category: str = dspy.InputField(desc="the category's definition, inclusions, exclusions and examples")
    sentence: str = dspy.InputField(desc="one sentence of a clinical note")
    present: bool = dspy.OutputField(desc="true if the sentence documents the category for the patient")



# VerifyCategory with annotated neighbours (retrieved few-shot demos, as DSPy's KNNFewShot retrieves
# them), derived rather than copied so the two questions cannot drift apart. The field sits after the
# guideline parts, which stay a cached prompt prefix, and before the sentence.
VerifyCategoryWithNeighbours = VerifyCategory.insert(
    2,
    "annotated",
    dspy.InputField(desc="similar sentences from annotated notes, each with its answer for this category"),
    type_=str,
).with_instructions(
    VerifyCategory.instructions + " Annotated sentences similar to it show how the guideline is applied."
)

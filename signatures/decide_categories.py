"""DecideCategories: one sentence of a clinical note -> a yes/no decision for every guideline category."""

from __future__ import annotations

import dspy

from clinsynth.data.taxonomy import Taxonomy


class DecideCategories(dspy.Signature):
    """Decide, for each category of the guideline, whether one sentence of a clinical note documents it.

    Answer true for a category only when the sentence affirms it for the patient, as the
    guideline defines it. Negated, hypothetical, family-history and normal findings are
    false for every category. Most sentences of a clinical note are false for all of them.
    """

    sentence: str = dspy.InputField(desc="one sentence of a clinical note")


def decision_fields(taxonomy: Taxonomy) -> dict[str, str]:
    """The output field of each category: its initials in lower case (``COGNITIVE_TESTING`` -> ``ct``).

    Generated tokens are the cost on a CPU (~10 a second here, and nine full names are ~80
    tokens an answer); initials keep an answer near the size of a label list. The
    instructions tie each field to its category's full name. A clash gets a number.
    """
    fields: dict[str, str] = {}
    for name in taxonomy.names:
        base = "".join(word[0] for word in name.lower().split("_") if word) or "c"
        field, n = base, 2
        while field in fields.values():
            field, n = f"{base}{n}", n + 1
        fields[name] = field
    return fields


def decide_categories_signature(taxonomy: Taxonomy) -> type[dspy.Signature]:
    """The signature for ``taxonomy``: one ``bool`` output per category, in guideline order.

    Each decision is a token of its own, so its probability (token logprobs) is a score per
    category that a threshold fitted on dev can turn into a label; a label list gives one
    probability for the whole set. The guideline is in the instructions (a cached prefix).
    """
    signature = DecideCategories
    for name, field in decision_fields(taxonomy).items():
        # The definitions are in the guideline; the field only ties its short name to the category.
        signature = signature.append(
            field, dspy.OutputField(desc=f"true if the sentence documents {name}, else false"), type_=bool
        )
    return signature.with_instructions(f"{DecideCategories.instructions}\n\n{taxonomy.guideline_text}")

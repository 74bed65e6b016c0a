"""GenerateSentences: a target (categories of the guideline) + style constraints -> new clinical sentences."""

from __future__ import annotations

import dspy


class GenerateSentences(dspy.Signature):
    """Write new sentences as they appear in real clinical notes, each documenting the target.

    Every sentence must document exactly what the target asks, stated for the patient,
    and nothing from other categories unless the target names them. Follow the style
    constraints (note type, section, who reports, severity, tense, abbreviations, length)
    so the sentence reads like that part of that note. Make the sentences differ from
    each other and from the guideline's examples in wording and structure. Invent no
    names, dates, ages over 89, record numbers, phone numbers or addresses: refer to
    people by their role ("the patient", "her daughter").
    """

    target: str = dspy.InputField(desc="what every sentence must document, with the guideline's definition")
    constraints: str = dspy.InputField(desc="style of the note the sentences come from")
    n: int = dspy.InputField(desc="how many sentences to write")
    sentences: list[str] = dspy.OutputField(desc="n distinct sentences, one clinical sentence each")

"""LabelToData: write clinical sentences for a target from the guideline alone (the bronze direction).

A *target* is what a batch of sentences must document: one category, a pair of categories
(multi-label), or NONE (hard negatives: negated, normal, family-history, hypothetical
mentions). Each call samples style constraints (note type and section, who reports,
severity, tense, abbreviations, length) from a seeded generator, so a call is
reproducible from ``(seed, target, call index)`` and a rerun can resume call by call.
No patient text is shown to the LM: only the taxonomy's definitions and examples.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import asdict, dataclass
from typing import Any

import dspy
import json_repair
from clinsynth.signatures.generate_sentences import GenerateSentences
from dspy.utils.exceptions import AdapterParseError

from clinsynth.data.corpus import split_sentences
from clinsynth.data.taxonomy import Taxonomy

NONE_TARGET = "NONE"
MULTI_TARGET = "MULTI"
MAX_TOKENS = 400  # 5 sentences of up to ~40 tokens each, plus JSON

# Style constraints, sampled per call and recorded in provenance. Clinical-generic: the
# taxonomy only adds category-specific reporters (GenerationHints).
NOTE_SECTIONS: dict[str, tuple[str, ...]] = {
    "neurology clinic note": ("history of present illness", "assessment and plan", "mental status examination"),
    "memory clinic evaluation": ("history", "cognitive testing", "impression"),
    "primary care visit": ("history of present illness", "review of systems", "assessment and plan"),
    "nursing note": ("nursing assessment", "shift note"),
    "discharge summary": ("hospital course", "discharge diagnoses", "discharge instructions"),
    "psychiatry consult": ("history of present illness", "mental status examination", "impression"),
    "social work note": ("psychosocial assessment", "plan"),
    "emergency department note": ("history of present illness", "ED course"),
    "home health visit": ("functional status", "safety assessment"),
    "physical therapy note": ("subjective", "assessment"),
}
CLINICAL_REPORTERS = ("the clinician (observed)", "the patient (self-report)", "a nurse", "the chart (documented)")
SEVERITIES = ("mild, early", "moderate", "severe, late")
TENSES = ("present", "past", "a recent change (present perfect)")
ABBREVIATIONS = ("none, write words out", "common clinical abbreviations (pt, hx, c/o, w/, s/p, f/u)")
LENGTHS = ("a short fragment of under 8 words", "one sentence of 10-20 words", "one long sentence of 20-35 words")
# How sentences sit in real notes, beyond full prose: list items, header lines, run-ons.
FORMS = (
    "a full sentence",
    "a terse fragment as in a bulleted list",
    "a 'HEADER: content' line (e.g. 'SOCIAL HISTORY: ...')",
    "a run-on of short statements joined by commas or semicolons, as dictated",
)
SHORTHAND_SHARE = 0.5  # share of single-category calls asked to use one of the category's shorthand forms
# The guideline's subject rules, said in every positive target: a small model otherwise
# writes a relative's smoking or a hypothetical as the category.
SUBJECT_RULE = "About the patient only: never a relative's or anyone else's status; current or past both count."

# Hard negatives: what makes a sentence NONE although it talks about a category's topic,
# with the cue a small model needs to get it right.
NEGATIVE_KINDS: dict[str, str] = {
    "negated": "the patient does NOT have it: use 'denies', 'no', 'without' or 'negative for'",
    "normal finding": "a normal exam or test result on the topic: 'intact', 'normal', 'within normal limits'",
    "family history": "it belongs to a relative, not the patient: 'mother had', 'family history of'",
    "hypothetical": "an instruction or contingency, not a fact: 'if ..., call', 'monitor for', 'return if'",
    "history source": "only who gave the history or came to the visit, with no change or concern reported",
    "unrelated": "an ordinary clinical statement (vitals, other illness, routine plan) with no sign at all",
}


@dataclass(frozen=True)
class GenerationRequest:
    """One call's plan: what to document, how, and the labels its sentences get."""

    call_id: str
    target: str  # a category name, NONE_TARGET or MULTI_TARGET
    labels: tuple[str, ...]  # the label set each sentence should carry ([] = NONE)
    attributes: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_target(taxonomy: Taxonomy, labels: tuple[str, ...], attributes: dict[str, Any]) -> str:
    """The ``target`` text for the signature: the concrete focus first, then the definition.

    A small model follows the first concrete phrase best, so the sampled focus leads. The
    guideline's example sentences are left out on purpose: a small model copies them.
    """
    focus = attributes.get("focus")
    if not labels:
        kind = attributes["negative_kind"]
        topic = focus or taxonomy.category(attributes["topic"]).definition
        return (
            f"Each sentence mentions {topic} but documents NO sign for the patient (label NONE): "
            f"{kind}, i.e. {NEGATIVE_KINDS[kind]}."
        )
    definitions = "\n".join(f"{name}: {taxonomy.category(name).definition}" for name in labels)
    shorthand = attributes.get("shorthand")
    if shorthand:
        focus = f"{focus}, written with the shorthand '{shorthand}'" if focus else f"the shorthand '{shorthand}'"
    if len(labels) == 1:
        head = f"Each sentence documents {focus} (category {labels[0]})." if focus else f"Category {labels[0]}."
    else:
        joined = " and ".join(labels)
        head = f"Each sentence documents {focus} (categories {joined}, all in one sentence)."
        head = head if focus else f"Categories {joined}, all in one sentence."
    return f"{head} {SUBJECT_RULE}\nDefinitions:\n{definitions}"


def render_constraints(attributes: dict[str, Any]) -> str:
    return (
        f"Note: {attributes['note_type']}, section: {attributes['section']}. "
        f"Stated by: {attributes['reporter']}. Severity: {attributes['severity']}. "
        f"Tense: {attributes['tense']}. Abbreviations: {attributes['abbreviations']}. "
        f"Length: {attributes['length']}."
        + (f" Form: {attributes['form']}." if attributes.get("form") else "")
    )


def request_inputs(taxonomy: Taxonomy, request: GenerationRequest, n: int) -> dict[str, Any]:
    """The signature's inputs for a planned request: what a run sends, a cost plan counts and compile scores."""
    return {
        "target": describe_target(taxonomy, request.labels, request.attributes),
        "constraints": render_constraints(request.attributes),
        "n": n,
    }


def _aspect(taxonomy: Taxonomy, name: str, rng: random.Random) -> str | None:
    aspects = taxonomy.category(name).generation.aspects
    return rng.choice(aspects) if aspects else None


def plan_call(taxonomy: Taxonomy, target: str, index: int, seed: int,
              shorthand_share: float = SHORTHAND_SHARE) -> GenerationRequest:  # fmt: skip
    """The request for call ``index`` of ``target``: deterministic in (seed, target, index).

    ``shorthand_share``: the chance that a call for a category is asked to use one of its
    shorthand forms (1.0 for a top-up that must cover how notes abbreviate)."""
    rng = random.Random(f"{seed}:{target}:{index}")
    note_type = rng.choice(sorted(NOTE_SECTIONS))
    attributes: dict[str, Any] = {
        "note_type": note_type,
        "section": rng.choice(NOTE_SECTIONS[note_type]),
        "severity": rng.choice(SEVERITIES),
        "tense": rng.choice(TENSES),
        "abbreviations": rng.choice(ABBREVIATIONS),
        "length": rng.choice(LENGTHS),
    }
    names = list(taxonomy.names)
    # Categories stated only with another one (a relative reporting a change) cannot be
    # the single target of a sentence, nor the companion of another such category.
    standalone = [n for n in names if not taxonomy.category(n).generation.with_another_category]
    if target == NONE_TARGET:
        attributes["negative_kind"] = rng.choice(sorted(NEGATIVE_KINDS))
        attributes["topic"] = rng.choice(standalone)
        labels: tuple[str, ...] = ()
        focus_from = [attributes["topic"]]
    elif target == MULTI_TARGET:
        labels = tuple(taxonomy.canonical(rng.sample(standalone, 2)))
        focus_from = list(labels)
    elif taxonomy.category(target).generation.with_another_category:
        companion = rng.choice([n for n in standalone if n != target])
        labels = tuple(taxonomy.canonical([target, companion]))
        focus_from = [companion]  # what the relative reports
    else:
        labels = (target,)
        focus_from = [target]
    aspects = [a for a in (_aspect(taxonomy, n, rng) for n in focus_from) if a]
    if aspects:
        attributes["focus"] = "; ".join(aspects)
    reporters = CLINICAL_REPORTERS
    for name in labels:
        if taxonomy.category(name).generation.reporters:
            reporters = taxonomy.category(name).generation.reporters
    attributes["reporter"] = rng.choice(reporters)
    # Drawn last, so the draws above (and plans of calls already made) are unchanged.
    attributes["form"] = rng.choice(FORMS)
    # The target's own shorthand, also when it is stated with a companion ("per daughter, ...").
    shorthand = taxonomy.category(target).generation.shorthand if target in taxonomy.names else ()
    if shorthand and rng.random() < shorthand_share:
        attributes["shorthand"] = rng.choice(shorthand)
    return GenerationRequest(call_id=f"{target}:{seed}:{index}", target=target, labels=labels, attributes=attributes)


def call_rollout(call_id: str) -> int:
    """A distinct rollout per planned call: two calls with the same prompt must not share
    one cached answer (they would only produce duplicates). Multiples of 1,000 leave room
    for retries."""
    return 1000 * (int(hashlib.sha256(call_id.encode()).hexdigest()[:7], 16) + 1)


def _salvage_string_answer(exc: AdapterParseError) -> list[str]:
    """A small model sometimes answers ``{"sentences": "one. two."}``: keep it as a list.

    Anything else is re-raised (and retried with a fresh sample by the caller).
    """
    try:
        answer = json_repair.loads(exc.lm_response.strip().removeprefix("```json").removesuffix("```"))
    except Exception:  # noqa: BLE001 - unreadable: the original error is the one to report
        raise exc from None
    if isinstance(answer, dict) and isinstance(answer.get("sentences"), str) and answer["sentences"].strip():
        return [answer["sentences"]]
    raise exc


def clean_sentence(text: Any) -> str:
    """One line, no list markers or wrapping quotes (small models add both)."""
    text = " ".join(str(text).split())
    text = text.lstrip("-*•0123456789.) ").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


class LabelToData(dspy.Module):
    """Write ``n`` sentences per call for a planned request (target + style constraints)."""

    def __init__(self, taxonomy: Taxonomy, n: int = 5) -> None:
        super().__init__()
        self.taxonomy = taxonomy
        self.n = n
        self.generate = dspy.Predict(GenerateSentences, max_tokens=MAX_TOKENS)

    def forward(self, target: str, constraints: str, n: int | None = None) -> dspy.Prediction:
        n = n or self.n
        try:
            items = self.generate(target=target, constraints=constraints, n=n).sentences or []
        except AdapterParseError as exc:
            items = _salvage_string_answer(exc)
            salvaged = True
        else:
            salvaged = False
        sentences, seen = [], set()
        for raw in items:
            # An item that runs on past one sentence becomes several candidates.
            for piece in split_sentences(clean_sentence(raw)):
                text = clean_sentence(piece)
                if len(text.split()) >= 2 and text.lower() not in seen:
                    seen.add(text.lower())
                    sentences.append(text)
        if not sentences:
            raise ValueError("the LM returned no usable sentence")
        if salvaged:
            self._trace_salvaged(dict(target=target, constraints=constraints, n=n), sentences)
        return dspy.Prediction(sentences=sentences)

    def _trace_salvaged(self, inputs: dict[str, Any], sentences: list[str]) -> None:
        """A salvaged answer left no trace (the parse failed), so an optimizer could never
        keep it as a demo: record it the way ``dspy.Predict`` does, as the clean list the
        model should have written."""
        trace = dspy.settings.trace
        if trace is not None and dspy.settings.max_trace_size > 0:
            if len(trace) >= dspy.settings.max_trace_size:
                trace.pop(0)
            trace.append((self.generate, inputs, dspy.Prediction(sentences=sentences)))

    def run_request(self, request: GenerationRequest) -> dspy.Prediction:
        return self(**request_inputs(self.taxonomy, request, self.n))

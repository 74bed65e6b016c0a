"""CategoryDecisions: a labeller that decides yes/no per category and thresholds each decision.

A small local model asked for a label list over-labels and gives one probability for the
whole list. Here it writes one boolean per category (``signatures.decide_categories``), the
server's token logprobs turn each into P(yes), and a per-category threshold fitted on gold
dev (``thresholds_for``, in ``calibrate``) makes the label. Thresholds are numbers applied on this machine
after the answer: they never enter a prompt. Without logprobs P(yes) is 1 or 0 and the
thresholds do nothing.

It keeps DataToLabel's interface (``forward(sentence)`` -> ``categories``, ``confidence``),
so labelling, the eval suite and the round trip use it unchanged, and its kNN demo pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.signatures.decide_categories import decide_categories_signature, decision_fields

from clinsynth.data.taxonomy import Taxonomy
from clinsynth.llm.confidence import answer_probability
from clinsynth.model.metrics import confusion, multilabel_scores

DEFAULT_THRESHOLD = 0.5
MIN_POSITIVES = 3  # fewer dev positives than this: keep the default threshold (one sentence would decide it)
# Nine booleans in JSON are ~60 tokens; the cap stops a rare loop early (it is retried).
MAX_TOKENS = 200
# A demo is ~120 tokens (a sentence and nine decisions): more would not fit beside the
# guideline in the embedded server's 4,096-token context.
MAX_DEMOS = 8
STATE_KEY = "decisions"


class CategoryDecisions(DataToLabel):
    """Multi-label labeller: one yes/no per category, P(yes) from logprobs, thresholds per category."""

    def __init__(self, taxonomy: Taxonomy) -> None:
        super().__init__(taxonomy)
        self.label = dspy.Predict(decide_categories_signature(taxonomy), max_tokens=MAX_TOKENS)
        self.fields = decision_fields(taxonomy)
        self.thresholds: dict[str, float] = {name: DEFAULT_THRESHOLD for name in taxonomy.names}

    def _nearest_demos(self, sentence: str) -> list[dspy.Example]:
        # The pool keeps label lists (like DataToLabel's); a demo here shows them as decisions.
        return [decisions_example(e.sentence, e.categories, self.taxonomy) for e in super()._nearest_demos(sentence)]

    def dump_state(self, json_mode: bool = True) -> dict:
        state = super().dump_state(json_mode=json_mode)
        state[STATE_KEY] = {"thresholds": dict(self.thresholds)}
        return state

    def load_state(self, state: dict, **kwargs: Any) -> None:
        super().load_state(state, **kwargs)
        saved = (state.get(STATE_KEY) or {}).get("thresholds") or {}
        unknown = sorted(set(saved) - set(self.taxonomy.names))
        if unknown:
            raise ValueError(f"thresholds for unknown categories {unknown}")
        self.thresholds.update({name: float(t) for name, t in saved.items()})

    def typical_answer(self) -> dict[str, Any]:
        return decisions_example("", [self.taxonomy.names[0]], self.taxonomy).labels().toDict()

    def scores(self, sentence: str) -> dict[str, float]:
        """P(yes) per category for one sentence (one LM call)."""
        pred = self.label(**self._inputs(sentence))
        logprobs = getattr(pred, "logprobs", None)
        out = {}
        for name, field in self.fields.items():
            said_yes = bool(getattr(pred, field))
            p = answer_probability(logprobs, field)
            out[name] = (p if said_yes else 1.0 - p) if p is not None else float(said_yes)
        return out

    def forward(self, sentence: str) -> dspy.Prediction:
        scores = self.scores(sentence)
        categories = [name for name in self.taxonomy.names if scores[name] >= self.thresholds[name]]
        # Confidence of the label set: every decision taken as made.
        confidence = 1.0
        for name, p in scores.items():
            confidence *= p if name in categories else 1.0 - p
        return dspy.Prediction(
            categories=categories, scores=scores, confidence=confidence, confidence_method="logprob-decisions"
        )


def decisions_example(sentence: str, categories: Sequence[str], taxonomy: Taxonomy) -> dspy.Example:
    """A labelled sentence as the signature's inputs and outputs (one boolean per category)."""
    chosen = set(categories)
    decisions = {field: name in chosen for name, field in decision_fields(taxonomy).items()}
    return dspy.Example(sentence=sentence, **decisions).with_inputs("sentence")


def best_threshold(scores: Sequence[float], positive: Sequence[bool], default: float = DEFAULT_THRESHOLD) -> float:
    """The threshold with the best F1 on (scores, positive); ``default`` when there are too few positives.

    Candidates are midpoints between neighbouring distinct scores (a threshold on a score
    itself would move with the smallest change of it); ties go to the one nearest ``default``.
    """
    if sum(positive) < MIN_POSITIVES:
        return default
    values = sorted(set(scores))
    candidates = [default] + [(a + b) / 2 for a, b in zip(values, values[1:], strict=False)]
    best, best_key = default, None
    for t in candidates:
        f1 = confusion((y, s >= t) for s, y in zip(scores, positive, strict=True)).f1
        key = (f1, -abs(t - default))
        if best_key is None or key > best_key:
            best, best_key = t, key
    return round(best, 6)


Scored = Sequence[tuple[dict[str, float] | None, Sequence[str]]]  # (P(yes) per category or None if failed, gold)


def thresholds_for(taxonomy: Taxonomy, scored: Scored) -> dict[str, float]:
    """Per-category thresholds with the best F1 on ``scored``; failed answers are left out."""
    usable = [(s, set(labels)) for s, labels in scored if s is not None]
    return {
        name: best_threshold([s[name] for s, _ in usable], [name in g for _, g in usable]) for name in taxonomy.names
    }


def cross_fitted_scores(taxonomy: Taxonomy, scored: Scored, folds: int = 2) -> dict[str, Any]:
    """Scores of thresholds fitted on the other folds (every ``folds``-th sentence): an honest dev estimate.

    Thresholds fitted on a set and scored on it look better than they are; here each
    sentence is labelled with thresholds that never saw it, at no extra LM call.
    """
    predicted: list[list[str]] = [[] for _ in scored]
    for fold in range(folds):
        fitted = thresholds_for(taxonomy, [x for i, x in enumerate(scored) if i % folds != fold])
        for i, (s, _) in enumerate(scored):
            if i % folds == fold and s is not None:
                predicted[i] = [name for name in taxonomy.names if s[name] >= fitted[name]]
    scores = multilabel_scores([list(g) for _, g in scored], predicted, taxonomy)
    return {"folds": folds, **{k: scores[k] for k in ("micro_f1", "macro_f1", "binary_f1")}}


def calibrate(
    taxonomy: Taxonomy,
    dev: Sequence[dspy.Example],
    handle: Any,
    demos: Sequence[dspy.Example] = (),
    threads: int = 1,
) -> CategoryDecisions:
    """A CategoryDecisions with ``demos`` (labelled examples, shown as decisions) and thresholds fitted on ``dev``.

    One LM call per dev sentence, retried. ``handle`` is anything with the LM handle's
    ``lm`` and ``context()`` (an optimizer ``Problem`` is one). A sentence whose answer
    fails after retries is left out of the fit.
    """
    from clinsynth.programs.scoring import run_timed

    program = CategoryDecisions(taxonomy)
    program.label.demos = [decisions_example(e.sentence, e.categories, taxonomy) for e in demos[:MAX_DEMOS]]
    attempts, _ = run_timed(lambda e: program.scores(e.sentence), dev, handle, threads=threads, desc="calibrate")
    scored = [(a.value if a.ok else None, e.categories) for a, e in zip(attempts, dev, strict=True)]
    program.thresholds.update(thresholds_for(taxonomy, scored))
    program.cross_fitted = cross_fitted_scores(taxonomy, scored)  # not state: compile records it in metadata
    return program

"""DataToLabel: label clinical sentences with a taxonomy's categories (the silver direction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dspy
from clinsynth.signatures.label_sentence import label_sentence_signature

from clinsynth.data.taxonomy import Taxonomy
from clinsynth.llm.confidence import agreement, answer_probability

SAMPLE_TEMPERATURE = 0.7
MAX_TOKENS = 160
MAX_TOKENS_EVIDENCE = 256
Embed = Callable[[Sequence[str]], Any]  # texts -> L2-normalised embeddings (n x d array)


class DataToLabel(dspy.Module):
    """Multi-label sentence labeller driven by the guideline, with a confidence per answer.

    ``confidence`` is the probability the LM gave to its label list (token logprobs, when
    the endpoint returns them) or, with ``samples`` > 1, the agreement of ``samples``
    answers (the first at the LM's temperature, the rest at 0.7). ``evidence`` adds a
    short quoted span. A compiled program may carry a demo pool from which the ``knn_k``
    nearest examples are shown for each sentence (embedding similarity), after its fixed
    demos if it has both.
    """

    def __init__(self, taxonomy: Taxonomy, evidence: bool = False, samples: int = 1) -> None:
        super().__init__()
        self.taxonomy = taxonomy
        self.evidence = evidence
        self.samples = samples
        # A label list is < 100 tokens; a cap stops a small model's rare loops early
        # (one looping answer at 512 tokens costs ~25 s on CPU) and they are retried.
        self.label = dspy.Predict(
            label_sentence_signature(taxonomy, evidence=evidence),
            max_tokens=MAX_TOKENS_EVIDENCE if evidence else MAX_TOKENS,
        )
        self.knn_k = 0
        self.demo_pool: list[dspy.Example] = []
        self._embed: Embed | None = None
        self._pool_vectors: Any = None

    # -- per-sentence demos (kNN)
    def set_demo_pool(self, examples: Sequence[dspy.Example], k: int, embed: Embed | None = None) -> None:
        self.demo_pool = [dspy.Example(sentence=e.sentence, categories=list(e.categories)) for e in examples]
        self.knn_k = k
        self._embed = embed
        self._pool_vectors = None

    def _nearest_demos(self, sentence: str) -> list[dspy.Example]:
        if self._embed is None:
            from clinsynth.model.embeddings import encode

            self._embed = encode
        if self._pool_vectors is None:
            self._pool_vectors = self._embed([e.sentence for e in self.demo_pool])
        scores = self._pool_vectors @ self._embed([sentence])[0]
        order = sorted(range(len(self.demo_pool)), key=lambda i: -float(scores[i]))[: self.knn_k]
        # Most similar last, nearest the question.
        return [self.demo_pool[i] for i in reversed(order)]

    def dump_state(self, json_mode: bool = True) -> dict:
        state = super().dump_state(json_mode=json_mode)
        if self.demo_pool:
            state["demo_pool"] = {"k": self.knn_k, "examples": [e.toDict() for e in self.demo_pool]}
        return state

    def load_state(self, state: dict, **kwargs: Any) -> None:
        super().load_state(state, **kwargs)
        pool = state.get("demo_pool")
        if pool:
            self.set_demo_pool([dspy.Example(**e) for e in pool["examples"]], k=int(pool["k"]), embed=self._embed)

    def typical_answer(self) -> dict[str, Any]:
        """The outputs of a typical answer (one category), for counting an answer's tokens in a cost plan."""
        return {"categories": [self.taxonomy.names[0]]}

    # -- labelling
    def _inputs(self, sentence: str) -> dict[str, Any]:
        """The predictor's inputs for one sentence, with its demos when it has a kNN pool."""
        kwargs: dict[str, Any] = {"sentence": sentence}
        if self.demo_pool and self.knn_k:
            # Fixed demos (if any) first, so they stay in the server's cached prefix; the
            # nearest ones last, next to the sentence.
            kwargs["demos"] = [*self.label.demos, *self._nearest_demos(sentence)]
        return kwargs

    def forward(self, sentence: str) -> dspy.Prediction:
        kwargs = self._inputs(sentence)
        pred = self.label(**kwargs)
        # Keep guideline order and drop repeats (and NONE), so equal label sets compare equal.
        categories = self.taxonomy.canonical(pred.categories)
        if self.samples > 1:
            answers: list[list[str] | None] = [categories]
            for k in range(1, self.samples):
                try:
                    extra = self.label(**kwargs, config={"rollout_id": k, "temperature": SAMPLE_TEMPERATURE})
                    answers.append(self.taxonomy.canonical(extra.categories))
                except Exception:  # noqa: BLE001 - a failed extra sample counts as disagreement
                    answers.append(None)
            confidence, method = agreement(answers), f"agreement@{self.samples}"
        else:
            confidence, method = answer_probability(getattr(pred, "logprobs", None), "categories"), "logprob"
            if confidence is None:
                method = None
        out = {"categories": categories, "confidence": confidence, "confidence_method": method}
        if self.evidence:
            out["evidence"] = pred.evidence
        return dspy.Prediction(**out)

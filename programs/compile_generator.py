"""Compiling LabelToData: planned requests as examples, the generation metric, per-category dev scores.

There are no gold *outputs* for generation, so optimizers that need labelled demos do not
apply; ``bootstrap`` keeps the program's own first good calls as demos, ``random-search``
tries several such demo sets (and none) on separate selection calls and keeps the best,
and ``mipro`` also searches instructions. The metric scores one call's sentences:

    0.5 * round-trip agreement   (share of the n sentences asked for whose labels the
                                  data-to-label program finds: fewer sentences score less)
  + 0.25 * diversity             (1 - mean pairwise cosine of the call's sentences)
  + 0.25 * realism               (mean max cosine to gold dev sentences of the target's categories)

and 0 for a call with a sentence at cosine >= 0.95 to a gold dev sentence (a leak).
While bootstrapping (a trace is passed) the metric is a yes/no gate instead: a call
becomes a demo only if at least 4 of 5 asked-for sentences pass the round trip, they
are varied (no pair the near-duplicate filter would drop), and none leaks.

Gold dev is only embedded (MiniLM, on this machine); it is never put in a prompt.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dspy
import numpy as np
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.generate import GENERATION_TEMPERATURE
from clinsynth.programs.label_to_data import (
    MULTI_TARGET,
    NONE_TARGET,
    LabelToData,
    plan_call,
    request_inputs,
)
from clinsynth.programs.optimizers import Problem
from clinsynth.programs.scoring import run_timed
from dspy.utils.exceptions import AdapterParseError

from clinsynth.data.bronze_filters import LEAK_COSINE, NEAR_DUPLICATE_COSINE, Embed, round_trip_agrees
from clinsynth.data.records import Record
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.llm.lm import LMHandle

PROGRAM = "label-to-data"
DEFAULT_K = 2
WEIGHTS = {"agreement": 0.5, "diversity": 0.25, "realism": 0.25}
# A demo must be a good *and* varied call. Gating each part, not the weighted sum: five
# agreeing near-paraphrases (diversity ~0.05) score ~0.66 and taught the model to
# paraphrase, while a 0.7 sum needs near-perfect agreement (1 of 22 calls qualified).
# Over the 315 calls behind tasks/ad_signs/data/bronze.jsonl, 34 (11%) pass agreement >= 0.8 and diversity >= 0.3.
DEMO_MIN_AGREEMENT = 0.8
DEMO_MIN_DIVERSITY = 0.3
DEMO_MAX_PAIR_COSINE = NEAR_DUPLICATE_COSINE  # the bronze near-duplicate filter: a demo shows none
SELECTION_START = 2000  # call indices for random-search's selection set (dev 0.., train 1000..)
log = logging.getLogger("clinsynth.programs.compile")


def generation_examples(
    taxonomy: Taxonomy, targets: Sequence[str], per_target: int, seed: int, start: int = 0, n: int = 5
) -> list[dspy.Example]:
    """Planned requests as examples; dev and train use disjoint call indices (``start``)."""
    examples = []
    for index in range(start, start + per_target):
        for target in targets:
            req = plan_call(taxonomy, target, index, seed)
            examples.append(
                dspy.Example(
                    **request_inputs(taxonomy, req, n),
                    target_labels=list(req.labels),
                    target_name=target,
                ).with_inputs("target", "constraints", "n")
            )
    return examples


def default_targets(taxonomy: Taxonomy, gold_dev: Sequence[Record]) -> list[str]:
    """Categories present in gold dev (so realism can be measured), NONE and multi-label."""
    present = {label for r in gold_dev for label in r.labels}
    return [n for n in taxonomy.names if n in present] + [NONE_TARGET, MULTI_TARGET]


class GenerationMetric:
    """Round-trip agreement, diversity and realism of one call's sentences (see the module doc)."""

    def __init__(self, labeler: DataToLabel, labeler_lm: Any, gold_dev: Sequence[Record], embed: Embed) -> None:
        self.labeler = labeler
        self.labeler_lm = labeler_lm
        self.embed = embed
        vectors = embed([r.text for r in gold_dev]) if gold_dev else np.zeros((0, 384), dtype=np.float32)
        rows: dict[str, list[int]] = defaultdict(list)
        for i, r in enumerate(gold_dev):
            for label in r.labels or [NONE_LABEL]:
                rows[label].append(i)
        self.gold_vectors = {label: vectors[idx] for label, idx in rows.items()}
        self.all_gold = vectors

    def parts(self, example: dspy.Example, sentences: Sequence[str]) -> dict[str, float]:
        if not sentences:
            return dict.fromkeys(WEIGHTS, 0.0)
        with dspy.context(lm=self.labeler_lm):
            predicted = [self._labels(s) for s in sentences]
        # Over the n sentences asked for: a call that returns one good sentence is not a good call.
        agrees = sum(p is not None and round_trip_agrees(example.target_labels, p) for p in predicted)
        agreement = agrees / max(len(sentences), example.n)
        vectors = self.embed(list(sentences))
        if len(sentences) > 1:
            sims = vectors @ vectors.T
            mean_pairwise = (sims.sum() - np.trace(sims)) / (len(sentences) * (len(sentences) - 1))
            diversity = float(np.clip(1.0 - mean_pairwise, 0.0, 1.0))
            max_pair = float((sims - 2 * np.eye(len(sentences))).max())
        else:
            diversity, max_pair = 0.0, 1.0
        references = [self.gold_vectors[k] for k in (example.target_labels or [NONE_LABEL]) if k in self.gold_vectors]
        if references:
            gold = np.concatenate(references)
            realism = float(np.clip((vectors @ gold.T).max(axis=1).mean(), 0.0, 1.0))
        else:
            realism = 0.0
        # A call that reproduces a gold sentence must never become a demo (it would be
        # committed in the compiled program): it scores 0.
        leak = float(len(self.all_gold) > 0 and (vectors @ self.all_gold.T).max() >= LEAK_COSINE)
        return {
            "agreement": agreement,
            "diversity": diversity,
            "realism": realism,
            "leak": leak,
            "max_pair_cosine": max_pair,
        }

    def _labels(self, sentence: str) -> list[str] | None:
        """The labeller's answer, or None when it is unusable (a label outside the taxonomy,
        no JSON): that sentence then does not agree, instead of the whole call failing."""
        try:
            return list(self.labeler(sentence=sentence).categories)
        except (AdapterParseError, ValueError) as exc:
            log.warning("round trip failed for %r: %s", sentence[:60], str(exc).splitlines()[0])
            return None

    def score(self, parts: dict[str, float]) -> float:
        if parts.get("leak"):
            return 0.0
        return sum(WEIGHTS[k] * parts[k] for k in WEIGHTS)

    def qualifies_as_demo(self, parts: dict[str, float]) -> bool:
        return (
            not parts.get("leak")
            and parts["agreement"] >= DEMO_MIN_AGREEMENT
            and parts["diversity"] >= DEMO_MIN_DIVERSITY
            and parts.get("max_pair_cosine", 0.0) < DEMO_MAX_PAIR_COSINE
        )

    def __call__(self, example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float | bool:
        parts = self.parts(example, pred.sentences)
        # DSPy convention: with a trace the optimizer asks "keep this as a demo?", without
        # one it asks "how good is this?".
        if trace is not None:
            return self.qualifies_as_demo(parts)
        return self.score(parts)


def generator_dev_scores(
    program: LabelToData,
    examples: Sequence[dspy.Example],
    metric: GenerationMetric,
    handle: LMHandle,
    threads: int,
    desc: str,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Metric parts per target (gold dev category, NONE, multi) and overall; failed calls score 0."""
    gen_lm = handle.lm.copy(temperature=GENERATION_TEMPERATURE)

    def one(ex: dspy.Example) -> dict[str, float]:
        with dspy.context(lm=gen_lm):
            pred = program(**ex.inputs())
        return metric.parts(ex, pred.sentences)

    results, seconds = run_timed(one, examples, handle, threads=threads, desc=desc, show_progress=show_progress)
    by_target: dict[str, list[dict[str, float]]] = defaultdict(list)
    for ex, r in zip(examples, results, strict=True):
        by_target[ex.target_name].append(r.value if r.ok else dict.fromkeys(WEIGHTS, 0.0))

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        out = {k: round(sum(row[k] for row in rows) / len(rows), 4) for k in WEIGHTS}
        out["score"] = round(metric.score(out), 4)
        return out

    every = [row for rows in by_target.values() for row in rows]
    return {
        "n": len(examples),
        "failed": sum(not r.ok for r in results),
        "seconds_per_call": round(seconds / max(1, len(examples)), 2),
        "overall": mean(every),
        "per_target": {t: mean(rows) for t, rows in by_target.items()},
    }


def generator_problem(
    student: LabelToData,
    train: list[dspy.Example],
    dev: list[dspy.Example],
    metric: GenerationMetric,
    handle: LMHandle,
    k: int = DEFAULT_K,
    seed: int = 0,
    threads: int = 1,
    trials: int = 6,
    selection: list[dspy.Example] | None = None,
) -> Problem:
    """The optimizer problem for the generator: only bootstrapped demos, sampled at generation temperature."""
    return Problem(
        program=PROGRAM,
        student=student,
        train=train,
        dev=dev,
        metric=metric,
        # Compile samples as generation does, so the demos kept are calls the real run could make.
        lm=handle.lm.copy(temperature=GENERATION_TEMPERATURE),
        adapter=handle.adapter,
        k=k,
        seed=seed,
        threads=threads,
        trials=trials,
        max_bootstrapped=k,
        max_labeled=0,  # no gold outputs to show
        # Selection runs on calls of its own so that the dev scores after compiling are not
        # the maximum of noisy dev scores.
        valset=selection,
        # Zero-shot (-3), the first good calls (-1) and ``trials`` shuffled demo sets; -2
        # (gold-labelled demos) does not exist here.
        restrict=[-3, -1, *range(trials)],
    )

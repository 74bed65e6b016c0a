"""The optimizer registry: every way ``programs.compile`` can tune a program, in one place.

An optimizer gets a ``Problem`` (the student, its train/dev examples, the metric, the
demo budget and the LM to run on) and returns the compiled program. Each program builds
its problem (``programs.compile_labeler``, ``programs.compile_generator``); the entry
says which programs it applies to and why not the others, so both programs go through
one compile path (``clinsynth.programs.steps.compile``).

Cheapest first (LM calls on the embedded model, ~1.5 s each):

- ``labeled-fewshot``: k gold train demos, stratified so every category and NONE show; no LM call.
- ``knn``: the k gold train sentences nearest each input (MiniLM) become its demos; no LM call
  to compile, but demos change per sentence, so the server cannot cache them.
- ``fewshot-knn``: both: the k stratified demos first (a prefix the server caches), then
  the 4 gold train sentences nearest each input (uncached, so each call costs more).
- ``bootstrap``: BootstrapFewShot; runs the program on train to keep demos it gets right
  (label-to-data: its own first good calls).
- ``random-search``: BootstrapFewShotWithRandomSearch; ``trials`` bootstrapped demo sets (plus
  zero-shot) scored on a validation set, the best kept. For data-to-label that set is gold
  dev, so its "after" score is optimistic; label-to-data uses calls of their own.
- ``mipro``: MIPROv2 (instruction + demo search); explicit train/dev, minibatch <= dev size.
- ``gepa``: GEPA reflective prompt evolution (reflection LM = the task LM).
- ``decisions``: replaces the label-list program by ``CategoryDecisions`` (a yes/no per
  category, P(yes) from logprobs) with the first k stratified train demos (at most 8) and
  fits a threshold per category on dev (one call per dev sentence). Its "after" dev score
  is on the sentences the thresholds were fitted on, so it is optimistic; compile also
  records a cross-fitted one (``dev_cross_fitted``), and gold test (``evals.run labeler``)
  is the honest one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import dspy

from clinsynth.errors import ClinsynthError

Metric = Callable[..., Any]


@dataclass
class Problem:
    """What an optimizer needs; the program's own module builds it (see the module docstring)."""

    program: str  # "data-to-label" | "label-to-data"
    student: Any  # the dspy.Module to tune (a copy: optimizers may change it in place)
    train: list[dspy.Example]  # demos and bootstrapping come from here, in this order
    dev: list[dspy.Example]
    metric: Metric  # DSPy metric(example, prediction, trace=None)
    lm: Any  # the dspy.LM the student runs on while compiling
    adapter: Any = None  # dspy.Adapter, or None for DSPy's default
    k: int = 4  # demos per prompt
    seed: int = 0
    threads: int = 1
    trials: int = 6  # search budget (random-search candidates, mipro trials, gepa dev passes)
    max_bootstrapped: int = 2
    max_labeled: int = 4
    metric_threshold: float | None = None  # bootstrapping keeps a demo only at or above this
    valset: list[dspy.Example] | None = None  # random search's selection set (default: dev)
    restrict: list[int] | None = None  # random search's candidate seeds (default: all)
    feedback_metric: Metric | None = None  # GEPA's metric with textual feedback
    demo_pool: list[dspy.Example] | None = None  # knn's pool (default: train)

    @contextmanager
    def context(self) -> Iterator[None]:
        kwargs: dict[str, Any] = {"lm": self.lm}
        if self.adapter is not None:
            kwargs["adapter"] = self.adapter
        with dspy.context(**kwargs):
            yield


@dataclass(frozen=True)
class Optimizer:
    name: str
    programs: frozenset[str]  # the programs it applies to
    run: Callable[[Problem], Any]
    help: str
    # Why it does not apply to the other programs (shown when one asks for it).
    needs: str = ""
    # Writes instructions from the training examples (they may quote them), not only demos.
    learns_instructions: bool = False


BOTH = frozenset({"data-to-label", "label-to-data"})
LABELLER = frozenset({"data-to-label"})


def _labeled_fewshot(p: Problem) -> Any:
    return dspy.LabeledFewShot(k=p.k).compile(p.student, trainset=p.train, sample=False)


def _knn(p: Problem) -> Any:
    p.student.set_demo_pool(p.demo_pool if p.demo_pool is not None else p.train, k=p.k)
    return p.student


FEWSHOT_KNN_NEAREST = 4  # nearest demos after the fixed ones: each is uncached prompt on every call


def _fewshot_knn(p: Problem) -> Any:
    compiled = _labeled_fewshot(p)
    compiled.set_demo_pool(p.demo_pool if p.demo_pool is not None else p.train, k=FEWSHOT_KNN_NEAREST)
    return compiled


def _bootstrap(p: Problem) -> Any:
    teleprompter = dspy.BootstrapFewShot(
        metric=p.metric,
        metric_threshold=p.metric_threshold,
        max_bootstrapped_demos=p.max_bootstrapped,
        max_labeled_demos=p.max_labeled,
        max_rounds=1,
    )
    with p.context():
        return teleprompter.compile(p.student, trainset=p.train)


def _random_search(p: Problem) -> Any:
    teleprompter = dspy.BootstrapFewShotWithRandomSearch(
        metric=p.metric,
        metric_threshold=p.metric_threshold,
        max_bootstrapped_demos=p.max_bootstrapped,
        max_labeled_demos=p.max_labeled,
        num_candidate_programs=p.trials,
        num_threads=p.threads,
    )
    valset = p.valset if p.valset is not None else p.dev
    with p.context():
        return teleprompter.compile(p.student, trainset=p.train, valset=valset, restrict=p.restrict)


def _mipro(p: Problem) -> Any:
    with p.context():
        return mipro(
            p.student, p.train, p.dev, p.metric, p.max_bootstrapped, p.max_labeled, p.threads, p.seed, p.trials
        )


def _gepa(p: Problem) -> Any:
    if p.feedback_metric is None:
        raise ClinsynthError(f"gepa needs a metric with feedback; {p.program} has none")
    teleprompter = dspy.GEPA(
        metric=p.feedback_metric,
        max_metric_calls=p.trials * max(1, len(p.dev)),
        reflection_lm=p.lm,
        num_threads=p.threads,
        seed=p.seed,
    )
    with p.context():
        return teleprompter.compile(p.student, trainset=p.train, valset=p.dev)


def _decisions(p: Problem) -> Any:
    from clinsynth.programs.category_decisions import calibrate

    # The Problem carries the LM and its context, which is all the retrying loop needs of a handle.
    # Demos: the first of the (stratified) train examples, at most MAX_DEMOS.
    return calibrate(p.student.taxonomy, p.dev, p, demos=p.train[: p.k], threads=p.threads)


_NO_GOLD_OUTPUTS = "it shows gold outputs as demos, and label-to-data has no gold outputs to show"
OPTIMIZERS: dict[str, Optimizer] = {
    o.name: o
    for o in (
        Optimizer("labeled-fewshot", LABELLER, _labeled_fewshot, "k stratified gold train demos; no LM call",
                  needs=_NO_GOLD_OUTPUTS),
        Optimizer("knn", LABELLER, _knn, "the k gold train sentences nearest each input as its demos",
                  needs=_NO_GOLD_OUTPUTS),
        Optimizer("fewshot-knn", LABELLER, _fewshot_knn,
                  f"labeled-fewshot's k demos (cached) plus the {FEWSHOT_KNN_NEAREST} gold train sentences "
                  "nearest each input", needs=_NO_GOLD_OUTPUTS),
        Optimizer("bootstrap", BOTH, _bootstrap, "keep the program's own good answers on train as demos"),
        Optimizer("random-search", BOTH, _random_search, "several bootstrapped demo sets (and none); keep the best"),
        Optimizer("mipro", BOTH, _mipro, "MIPROv2: instruction and demo search", learns_instructions=True),
        Optimizer("decisions", LABELLER, _decisions,
                  "a yes/no per category with logprobs; thresholds fitted on dev (one call per dev sentence)",
                  needs="it fits label thresholds, and label-to-data writes sentences"),
        Optimizer("gepa", LABELLER, _gepa, "GEPA reflective prompt evolution", learns_instructions=True,
                  needs="its reflection needs per-example feedback, which the generation metric does not give"),
    )
}  # fmt: skip


def optimizers_for(program: str) -> list[str]:
    return [name for name, o in OPTIMIZERS.items() if program in o.programs]


def get_optimizer(name: str, program: str) -> Optimizer:
    """The registry entry, or a ClinsynthError that says what to choose instead."""
    choices = ", ".join(optimizers_for(program))
    optimizer = OPTIMIZERS.get(name)
    if optimizer is None:
        raise ClinsynthError(f"unknown optimizer {name!r}; choose from {choices}")
    if program not in optimizer.programs:
        reason = f" ({optimizer.needs})" if optimizer.needs else ""
        raise ClinsynthError(f"optimizer {name!r} does not apply to {program}{reason}; choose from {choices}")
    return optimizer


def mipro(
    student: Any,
    train: list[dspy.Example],
    dev: list[dspy.Example],
    metric: Metric,
    bootstrapped: int,
    labeled: int,
    threads: int,
    seed: int,
    trials: int,
) -> Any:
    """MIPROv2 with an explicit valset and a minibatch no larger than it (dspy issues on auto-splitting)."""
    teleprompter = dspy.MIPROv2(
        metric=metric,
        auto=None,
        num_candidates=max(2, trials // 2),
        max_bootstrapped_demos=bootstrapped,
        max_labeled_demos=labeled,
        num_threads=threads,
        seed=seed,
    )
    return teleprompter.compile(
        student,
        trainset=train,
        valset=dev,
        num_trials=trials,
        minibatch=len(dev) > 25,
        minibatch_size=min(25, len(dev)),
    )


def search_candidates(compiled: Any) -> list[dict[str, Any]]:
    """What random search compared (best first): its seed (-3 zero-shot, -2 labelled demos, -1 first
    good demos, 0.. shuffled demo sets), score on the validation set and number of demos.
    Empty for optimizers that keep no candidates."""
    return [
        {
            "seed": c["seed"],
            "score": round(float(c["score"]), 2),
            "demos": sum(len(p.demos) for p in c["program"].predictors()),
        }
        for c in getattr(compiled, "candidate_programs", None) or []
    ]

"""``python -m programs.compile``: tune a program's prompt on gold train, score it on gold dev.

Prints the dev scores before and after and writes ``compiled/<program>.<lm>.json``
(DSPy state-only JSON plus metadata: DSPy version, LM, optimizer, seed, data, scores).

Optimizers, cheapest first (LM calls on this machine's embedded model, ~1.5 s each):

- ``labeled-fewshot``: k gold train demos, stratified so every category and NONE show; no LM call.
- ``knn``: the k gold train sentences nearest each input (MiniLM) become its demos; no LM call
  to compile, but demos change per sentence, so the server cannot cache them.
- ``bootstrap``: BootstrapFewShot; runs the program on train to keep demos it gets right.
- ``random-search``: BootstrapFewShotWithRandomSearch; ``--trials`` bootstrapped demo sets
  (plus zero-shot) scored on a validation set, the best kept. For data-to-label that set is
  gold dev, so its "after" score is optimistic.
- ``mipro``: MIPROv2 (instruction + demo search); explicit train/dev, minibatch <= dev size.
- ``gepa``: GEPA reflective prompt evolution (reflection LM = the task LM unless given).

``--program label-to-data`` compiles the generator instead (``bootstrap``, ``random-search``
or ``mipro``)
against a metric of round-trip agreement, diversity and closeness to gold dev, reported
per gold dev category; see ``programs.compile_generator``.
"""

from __future__ import annotations  # noqa: I001  (clinsynth must be imported before dspy)

import argparse
import logging
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clinsynth  # noqa: F401  (offline environment before dspy)
import dspy
from clinsynth.compiled import compiled_path, load_compiled, save_compiled, taxonomy_sha256
from clinsynth.config import load_config
from clinsynth.errors import ClinsynthError
from clinsynth.gold import SENSITIVITY
from clinsynth.lm import LMHandle, endpoint_for, make_lm
from clinsynth.metrics import multilabel_scores, set_f1
from clinsynth.privacy import Sensitivity, check_send
from clinsynth.records import Record, now_iso, read_records
from clinsynth.report import format_table
from clinsynth.runner import run_all
from clinsynth.taxonomy import DEFAULT_TAXONOMY, NONE_LABEL, Taxonomy, load_taxonomy
from programs.data_to_label import DataToLabel

OPTIMIZERS = ("labeled-fewshot", "knn", "bootstrap", "random-search", "mipro", "gepa")
PROGRAMS = {"data-to-label": "data_to_label", "label-to-data": "label_to_data"}
log = logging.getLogger("programs.compile")


# ---------------------------------------------------------------- data and metric


def to_examples(records: Sequence[Record]) -> list[dspy.Example]:
    return [dspy.Example(sentence=r.text, categories=list(r.labels)).with_inputs("sentence") for r in records]


def stratified(examples: Sequence[dspy.Example], taxonomy: Taxonomy, seed: int) -> list[dspy.Example]:
    """Shuffle, then alternate categories (by first label, guideline order) with NONE examples.

    A prefix of ``2 * len(categories)`` holds every category once and as many NONE
    sentences: demos cover the label set, and half of them show what is *not* labelled,
    which a small model needs more than more positives (it over-labels).
    """
    rng = random.Random(seed)
    pools: dict[str, list[dspy.Example]] = {}
    for ex in examples:
        pools.setdefault(taxonomy.first_label(ex.categories), []).append(ex)
    for pool in pools.values():
        rng.shuffle(pool)
    negatives = pools.pop(NONE_LABEL, [])
    out: list[dspy.Example] = []
    while any(pools.values()) or negatives:
        for name in taxonomy.names:
            if pools.get(name):
                out.append(pools[name].pop())
                if negatives:
                    out.append(negatives.pop())
        if not any(pools.values()):
            out.extend(reversed(negatives))
            negatives = []
    return out


def label_f1(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> float:
    """Per-sentence set F1 (both NONE = 1); the compile metric."""
    return set_f1(example.categories, pred.categories)


def label_f1_with_feedback(
    gold: dspy.Example, pred: dspy.Prediction, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
) -> dspy.Prediction:
    """GEPA's metric: the score plus what was missed or wrongly added, in words."""
    score = set_f1(gold.categories, pred.categories)
    missed = sorted(set(gold.categories) - set(pred.categories))
    extra = sorted(set(pred.categories) - set(gold.categories))
    if score == 1:
        feedback = "Correct."
    else:
        feedback = f"Expected {gold.categories or ['NONE']}."
        if missed:
            feedback += f" Missed {missed}."
        if extra:
            feedback += f" Wrongly added {extra}: check the guideline's exclusions (negation, normal findings)."
    return dspy.Prediction(score=score, feedback=feedback)


def dev_scores(
    program: DataToLabel, examples: Sequence[dspy.Example], handle: LMHandle, threads: int, desc: str
) -> dict[str, Any]:
    """Scores of ``program`` on ``examples``; failed sentences count as NONE and are counted."""
    started = time.monotonic()
    results = run_all(lambda ex: program(sentence=ex.sentence), list(examples), handle, threads=threads, desc=desc)
    seconds = time.monotonic() - started
    predicted = [list(r.value.categories) if r.ok else [] for r in results]
    gold = [list(ex.categories) for ex in examples]
    scores = multilabel_scores(gold, predicted, program.taxonomy)
    return {
        "n": len(examples),
        "mean_set_f1": sum(set_f1(g, p) for g, p in zip(gold, predicted, strict=True)) / max(1, len(gold)),
        "micro_f1": scores["micro_f1"],
        "macro_f1": scores["macro_f1"],
        "binary_f1": scores["binary_f1"],
        "failed": sum(not r.ok for r in results),
        "seconds_per_sentence": seconds / max(1, len(examples)),
    }


# ---------------------------------------------------------------- optimizers


def optimize(
    optimizer: str,
    student: DataToLabel,
    train: list[dspy.Example],
    dev: list[dspy.Example],
    handle: LMHandle,
    k: int,
    seed: int,
    threads: int,
    trials: int,
) -> DataToLabel:
    taxonomy = student.taxonomy
    ordered = stratified(train, taxonomy, seed)
    if optimizer == "labeled-fewshot":
        return dspy.LabeledFewShot(k=k).compile(student, trainset=ordered, sample=False)
    if optimizer == "knn":
        student.set_demo_pool(train, k=k)
        return student
    with handle.context():
        if optimizer == "bootstrap":
            teleprompter = dspy.BootstrapFewShot(
                metric=label_f1,
                metric_threshold=1.0,
                max_bootstrapped_demos=max(1, k // 2),
                max_labeled_demos=k,
                max_rounds=1,
            )
            return teleprompter.compile(student, trainset=ordered)
        if optimizer == "random-search":
            teleprompter = dspy.BootstrapFewShotWithRandomSearch(
                metric=label_f1,
                metric_threshold=1.0,
                max_bootstrapped_demos=max(1, k // 2),
                max_labeled_demos=k,
                num_candidate_programs=trials,
                num_threads=threads,
            )
            return teleprompter.compile(student, trainset=ordered, valset=dev)
        if optimizer == "mipro":
            return mipro(student, ordered, dev, label_f1, max(1, k // 2), k, threads, seed, trials)
        if optimizer == "gepa":
            teleprompter = dspy.GEPA(
                metric=label_f1_with_feedback,
                max_metric_calls=trials * max(1, len(dev)),
                reflection_lm=handle.lm,
                num_threads=threads,
                seed=seed,
            )
            return teleprompter.compile(student, trainset=ordered, valset=dev)
    raise ClinsynthError(f"unknown optimizer {optimizer!r}; choose from {', '.join(OPTIMIZERS)}")


def mipro(
    student: Any,
    train: list[dspy.Example],
    dev: list[dspy.Example],
    metric: Any,
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


# ---------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m programs.compile", description=__doc__.splitlines()[0])
    p.add_argument("--program", choices=sorted(PROGRAMS), default="data-to-label")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="labeled-fewshot")
    p.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    p.add_argument("--api-base", default=None)
    p.add_argument("--train", type=Path, default=Path("data/gold/train.jsonl"))
    p.add_argument("--dev", type=Path, default=Path("data/gold/dev.jsonl"))
    p.add_argument("--dev-limit", type=int, default=None, help="score on the first N dev sentences only")
    p.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    p.add_argument("--k", type=int, default=None, help="demos per prompt (default 18; label-to-data 2)")
    p.add_argument(
        "--per-target", type=int, default=1, help="label-to-data: dev calls per target (train: twice as many)"
    )
    p.add_argument("--labeler", type=Path, default=None, help="label-to-data: DataToLabel program for the round trip")
    p.add_argument("--trials", type=int, default=6, help="search budget for mipro/gepa")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="parallel requests (1 for the embedded LM)")
    p.add_argument("--out", type=Path, default=None, help="default: compiled/<program>.<lm>.json")
    p.add_argument("--skip-before", action="store_true", help="do not score the uncompiled program")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.program == "label-to-data":
        return compile_label_to_data(args)
    args.k = 18 if args.k is None else args.k
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        train = to_examples(read_records(args.train, taxonomy))
        dev = to_examples(read_records(args.dev, taxonomy))[: args.dev_limit]
        # Gold is private: the gate runs before any server starts.
        check_send(f"gold {args.train}, {args.dev}", SENSITIVITY, endpoint_for(args.lm, args.api_base), load_config())
        handle = make_lm(args.lm, api_base=args.api_base)
        out = args.out or compiled_path(PROGRAMS[args.program], handle.name)
        student = DataToLabel(taxonomy)
        before = None if args.skip_before else dev_scores(student, dev, handle, args.threads, "dev, before")
        started = time.monotonic()
        compiled = optimize(
            args.optimizer, student.deepcopy(), train, dev, handle, args.k, args.seed, args.threads, args.trials
        )
        compile_seconds = time.monotonic() - started
        after = dev_scores(compiled, dev, handle, args.threads, "dev, after")
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metadata = {
        "clinsynth": {
            "program": args.program,
            "optimizer": args.optimizer,
            "lm": handle.name,
            "seed": args.seed,
            "k": args.k,
            "trials": args.trials,
            "train": {"path": str(args.train), "n": len(train)},
            "dev": {"path": str(args.dev), "n": len(dev)},
            "dev_before": before,
            "dev_after": after,
            "candidates": search_candidates(compiled),
            "compile_seconds": round(compile_seconds, 1),
            "created_at": now_iso(),
        },
        "taxonomy_sha256": taxonomy_sha256(taxonomy),
    }
    save_compiled(compiled, out, metadata)
    rows = [["before (zero-shot)", *_cells(before)]] if before else []
    rows.append([f"after ({args.optimizer})", *_cells(after)])
    print(format_table(["dev", "mean set F1", "micro F1", "macro F1", "binary F1", "failed", "s/sentence"], rows))
    print(f"wrote {out}")
    return 0


def compile_label_to_data(args: argparse.Namespace) -> int:
    """LabelToData against the generation metric, scored per gold dev category."""
    from clinsynth.embeddings import encode
    from programs import compile_generator as cg
    from programs.label import default_program_path
    from programs.label_to_data import LabelToData

    k = 2 if args.k is None else args.k
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        gold_dev = read_records(args.dev, taxonomy)
        targets = cg.default_targets(taxonomy, gold_dev)
        dev = cg.generation_examples(taxonomy, targets, args.per_target, args.seed, start=0)
        train = cg.generation_examples(taxonomy, targets, 2 * args.per_target, args.seed, start=1000)
        selection = cg.generation_examples(taxonomy, targets, args.per_target, args.seed, start=cg.SELECTION_START)
        # Only the guideline and generated text reach the LM; gold dev is embedded locally.
        check_send(
            "the guideline and generated sentences",
            Sensitivity.SYNTHETIC,
            endpoint_for(args.lm, args.api_base),
            load_config(),
        )
        handle = make_lm(args.lm, api_base=args.api_base)
        labeler = DataToLabel(taxonomy)
        labeler_path = args.labeler or default_program_path(handle.name)
        if labeler_path is not None:
            load_compiled(labeler, labeler_path, taxonomy)
        metric = cg.GenerationMetric(labeler, handle.lm, gold_dev, encode)
        out = args.out or compiled_path(PROGRAMS[args.program], handle.name)
        student = LabelToData(taxonomy)
        with handle.context():
            before = None
            if not args.skip_before:
                before = cg.generator_dev_scores(student, dev, metric, handle, args.threads, "dev, before")
            started = time.monotonic()
            compiled = cg.optimize_generator(
                args.optimizer,
                student.deepcopy(),
                train,
                dev,
                metric,
                handle,
                k,
                args.seed,
                args.threads,
                args.trials,
                selection=selection,
            )
            compile_seconds = time.monotonic() - started
            after = cg.generator_dev_scores(compiled, dev, metric, handle, args.threads, "dev, after")
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    metadata = {
        "clinsynth": {
            "program": args.program,
            "optimizer": args.optimizer,
            "lm": handle.name,
            "seed": args.seed,
            "k": k,
            "metric": cg.WEIGHTS,
            "labeler": str(labeler_path) if labeler_path else None,
            "dev": {"gold": str(args.dev), "targets": targets, "calls": len(dev)},
            "train_calls": len(train),
            "selection_calls": len(selection) if args.optimizer == "random-search" else 0,
            "demos": len(compiled.generate.demos),
            "dev_before": before,
            "dev_after": after,
            "candidates": search_candidates(compiled),
            "compile_seconds": round(compile_seconds, 1),
            "created_at": now_iso(),
        },
        "taxonomy_sha256": taxonomy_sha256(taxonomy),
    }
    save_compiled(compiled, out, metadata)
    rows = []
    for target in targets:
        b = before["per_target"].get(target) if before else None
        a = after["per_target"][target]
        rows.append([target, b["score"] if b else "", a["score"], a["agreement"], a["diversity"], a["realism"]])
    rows.append(
        [
            "overall",
            before["overall"]["score"] if before else "",
            *[after["overall"][c] for c in ("score", "agreement", "diversity", "realism")],
        ]
    )
    print(format_table(["dev target", "before", "after", "agreement", "diversity", "realism"], rows))
    print(f"wrote {out}")
    return 0


def search_candidates(compiled: Any) -> list[dict[str, Any]]:
    """What random search compared (best first): its seed (-3 zero-shot, -1 first good
    demos, 0.. shuffled demo sets), score on the validation calls and number of demos.
    Empty for optimizers that keep no candidates."""
    return [
        {
            "seed": c["seed"],
            "score": round(float(c["score"]), 2),
            "demos": sum(len(p.demos) for p in c["program"].predictors()),
        }
        for c in getattr(compiled, "candidate_programs", None) or []
    ]


def _cells(scores: dict[str, Any]) -> list[Any]:
    return [
        scores["mean_set_f1"],
        scores["micro_f1"],
        scores["macro_f1"],
        scores["binary_f1"],
        scores["failed"],
        scores["seconds_per_sentence"],
    ]


if __name__ == "__main__":
    sys.exit(main())

"""Ways to combine the rule list with the student, compared on the experiment's finished fold runs.

The hybrid in every report (``clinsynth.model.hybrid.RuleStack``: a rule hit, or the student
above one threshold fitted on the fold's inner dev) is one way to stack the student's scores
with the rule hits. This suite scores it beside the other ways the field uses, on the same
folds, seeds and students, with paired CIs against the rule list and against the hybrid:

- ``student``: the student alone at its own tuned thresholds;
- ``rules or student`` (the hybrid): fitted on the inner dev, the student kept to the rule
  list's scope (it adds no category the list calls negated, someone else's or hypothetical);
- ``rules or student, scope ignored``: the same without that scope;
- ``rules or student, per-category thresholds``: one threshold per category, fitted on the
  other folds' out-of-fold scores of the same seed (five times the inner dev's sentences);
- ``rule veto``: the student may also overrule a rule hit, ``(hit and score >= lo) or
  score >= hi``, both thresholds fitted on the inner dev;
- ``calibrated stack per category``: a logistic regression per category on
  ``[logit(score), rule hit, their product]``, fitted out of fold (the other folds of the
  same seed), positive at probability 0.5;
- ``rules or student, threshold from the other folds``: the hybrid with its rule use fitted on
  the inner dev as usual, and its one threshold on the other folds' out-of-fold scores of the
  same seed (about five times the inner dev's sentences, scored by other students);
- ``rules or student, student gated per category`` (inner dev / other folds): the hybrid, its
  student kept off each category where, on those held-out sentences, its additions lowered the
  category's F1 (a twin of the hybrid's ``use_rule``, for the student);
- ``rules or student, threshold by cue context``: two student thresholds fitted on the other folds,
  one for sentences where some rule fires, one for those where none does;
- ``rules or student, rule veto per category (other folds)``: the hybrid, a rule hit dropped where
  the student scores it under its category's bar (``VETO_GRID``; 0 keeps every hit), each bar
  fitted on the other folds: the per-category twin of ``rule veto`` (out of fold, the rule hits
  the AD student scores under 0.05 are right about half the time, and some categories' far less);
- ``rules or student, seed ensemble`` (one row per mix, not per seed): the hybrid over the mean
  of the seeds' scores. A fold's evaluation notes and inner dev do not depend on the seed, so
  the seeds' students of a fold can be averaged on both and the stack fitted on the mean.

Nothing is trained: every run must already be in the task's ``reports/cv-runs/`` (run
``python -m evals.run cv`` first). Fitting uses no fold's own labels; gold test is not read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.core import headline_over_seeds, mean_sd_text
from clinsynth.evals.cv import (
    HEADLINE,
    RULE_LIST,
    CrossValidation,
    CVSettings,
    FoldRun,
    note_of,
    paired_ci,
    task_cross_validation,
)
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.records import Record
from clinsynth.errors import DataError
from clinsynth.model.hybrid import THRESHOLD_GRID, RuleStack, best_threshold
from clinsynth.model.metrics import category_matrix, micro_macro_f1, multilabel_scores
from clinsynth.report import format_table

REPORT = "combiners"
HYBRID = "rules or student"
LOGIT_CLIP = 1e-4
VETO_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)  # a rule hit the student scores under the bar is dropped; 0: none


@dataclass
class FoldView:
    """What a combiner may look at for one fold: held-out data only, never the fold's labels."""

    scores: np.ndarray  # the fold's sentences x categories (the student's scores)
    hits: np.ndarray  # the fold's rule hits, 0/1
    out_of_scope: np.ndarray  # the fold's cells the rule list calls out of scope (RuleSet.out_of_scope)
    thresholds: np.ndarray  # the student's own per-category thresholds (tuned on the inner dev)
    dev_scores: np.ndarray  # the inner dev's scores, hits and gold labels
    dev_hits: np.ndarray
    dev_gold: np.ndarray
    dev_out_of_scope: np.ndarray
    other_scores: np.ndarray  # the other folds' out-of-fold scores, hits and gold labels (same seed)
    other_hits: np.ndarray
    other_gold: np.ndarray
    other_out_of_scope: np.ndarray | None = None  # None: the other folds' sentences are all in scope

    def other_scope(self) -> np.ndarray:
        """The other folds' out-of-scope cells, all False where none were given."""
        if self.other_out_of_scope is not None:
            return self.other_out_of_scope
        return np.zeros(self.other_scores.shape, dtype=bool)


Combiner = Callable[[FoldView, Sequence[str]], np.ndarray]  # -> 0/1 decisions for the fold


def student_alone(view: FoldView, names: Sequence[str]) -> np.ndarray:
    return view.scores >= view.thresholds


def rules_or_student(view: FoldView, names: Sequence[str]) -> np.ndarray:
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)
    return stack.decide(names, view.scores, view.hits, view.out_of_scope)


def rules_or_student_any_scope(view: FoldView, names: Sequence[str]) -> np.ndarray:
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold)
    return stack.decide(names, view.scores, view.hits)


def threshold_from_other_folds(view: FoldView, names: Sequence[str]) -> np.ndarray:
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)
    stack.threshold = best_threshold(names, view.other_scores, view.other_hits, view.other_gold, stack.use_rule,
                                     view.other_out_of_scope)  # fmt: skip
    return stack.decide(names, view.scores, view.hits, view.out_of_scope)


def _f1(decided: np.ndarray, gold: np.ndarray) -> float:
    tp = int((decided & gold).sum())
    wrong = int((decided != gold).sum())
    return 2 * tp / max(1, 2 * tp + wrong)


def per_category_thresholds(view: FoldView, names: Sequence[str]) -> np.ndarray:
    hits, gold, scores = view.other_hits > 0, view.other_gold, view.other_scores

    def best(j: int) -> float:
        # Ties go to the higher threshold, as in RuleStack: the student adds as little as it can.
        return max(THRESHOLD_GRID, key=lambda t: (round(_f1(hits[:, j] | (scores[:, j] >= t), gold[:, j]), 9), t))

    chosen = [best(j) for j in range(len(names))]
    return (view.hits > 0) | (view.scores >= np.asarray(chosen))


def rule_veto(view: FoldView, names: Sequence[str]) -> np.ndarray:
    hits = view.dev_hits > 0
    pairs = [(lo, hi) for lo in (0.0, *THRESHOLD_GRID) for hi in (*THRESHOLD_GRID, 1.01) if hi >= lo]

    def score(pair: tuple[float, float]) -> tuple[float, float, float]:
        lo, hi = pair
        decided = (hits & (view.dev_scores >= lo)) | (view.dev_scores >= hi)
        return round(micro_macro_f1(decided, view.dev_gold), 9), -lo, hi  # ties: the weakest veto

    lo, hi = max(pairs, key=score)
    return ((view.hits > 0) & (view.scores >= lo)) | (view.scores >= hi)


def per_category_f1(decided: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Each category's F1 of 0/1 decisions (one column a category) against gold."""
    return np.asarray([_f1(decided[:, j], gold[:, j]) for j in range(gold.shape[1])])


def _student_helps(decided_with: np.ndarray, decided_without: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per category: the stack with the student's additions is at least as good (F1) as without them."""
    return per_category_f1(decided_with, gold) >= per_category_f1(decided_without, gold)


def _gated(view: FoldView, names: Sequence[str], scores: np.ndarray, hits: np.ndarray, gold: np.ndarray,
           out_of_scope: np.ndarray) -> np.ndarray:  # fmt: skip
    """The hybrid, its student kept off each category where its additions lowered that category's F1
    on the given held-out sentences (a student twin of ``use_rule``)."""
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)
    rules_only = RuleStack(threshold=1.01, use_rule=stack.use_rule, respect_scope=False)
    keep = _student_helps(stack.decide(names, scores, hits, out_of_scope), rules_only.decide(names, scores, hits),
                          gold.astype(bool))  # fmt: skip
    with_student = stack.decide(names, view.scores, view.hits, view.out_of_scope)
    without = rules_only.decide(names, view.scores, view.hits)
    return np.where(keep, with_student, without)


def student_gated_on_dev(view: FoldView, names: Sequence[str]) -> np.ndarray:
    return _gated(view, names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)


def student_gated_on_other_folds(view: FoldView, names: Sequence[str]) -> np.ndarray:
    return _gated(view, names, view.other_scores, view.other_hits, view.other_gold, view.other_scope())


def threshold_by_cue_context(view: FoldView, names: Sequence[str]) -> np.ndarray:
    """The hybrid with two student thresholds, both fitted on the other folds: one for sentences where
    some rule fires (an AD- or SDoH-relevant sentence), one for sentences where none does."""
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)
    other_context = (view.other_hits > 0).any(axis=1)
    decided = {}
    for context in (True, False):
        rows = other_context == context
        threshold = stack.threshold  # no such sentence on the other folds: the inner dev's threshold
        if rows.any():
            scope = None if view.other_out_of_scope is None else view.other_out_of_scope[rows]
            threshold = best_threshold(names, view.other_scores[rows], view.other_hits[rows], view.other_gold[rows],
                                       stack.use_rule, scope)  # fmt: skip
        decided[context] = replace(stack, threshold=threshold).decide(names, view.scores, view.hits,
                                                                      view.out_of_scope)  # fmt: skip
    context = (view.hits > 0).any(axis=1)[:, None]
    return np.where(context, decided[True], decided[False])


def rule_veto_per_category(view: FoldView, names: Sequence[str]) -> np.ndarray:
    stack = RuleStack.fit(names, view.dev_scores, view.dev_hits, view.dev_gold, view.dev_out_of_scope)
    other = stack.decide(names, view.other_scores, view.other_hits, view.other_scope())
    other_hits, gold = view.other_hits > 0, view.other_gold.astype(bool)

    def bar(j: int) -> float:
        def f1(lo: float) -> float:
            return round(_f1(other[:, j] & ~(other_hits[:, j] & (view.other_scores[:, j] < lo)), gold[:, j]), 9)

        return max(VETO_GRID, key=lambda lo: (f1(lo), -lo))  # ties: the weakest veto

    bars = np.asarray([bar(j) for j in range(len(names))])
    decided = stack.decide(names, view.scores, view.hits, view.out_of_scope)
    return decided & ~((view.hits > 0) & (view.scores < bars))


def _stack_features(scores: np.ndarray, hits: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, LOGIT_CLIP, 1 - LOGIT_CLIP)
    logit = np.log(clipped / (1 - clipped))
    return np.stack([logit, hits, logit * hits], axis=-1)


def calibrated_stack(view: FoldView, names: Sequence[str]) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    train = _stack_features(view.other_scores, view.other_hits)
    test = _stack_features(view.scores, view.hits)
    out = np.zeros(view.scores.shape, dtype=bool)
    for j in range(len(names)):
        gold = view.other_gold[:, j]
        if gold.all() or not gold.any():  # one class only: nothing to calibrate, follow it
            out[:, j] = bool(gold.any())
            continue
        model = LogisticRegression().fit(train[:, j], gold)
        out[:, j] = model.predict_proba(test[:, j])[:, 1] >= 0.5
    return out


COMBINERS: dict[str, Combiner] = {
    "student": student_alone,
    HYBRID: rules_or_student,
    f"{HYBRID}, scope ignored": rules_or_student_any_scope,
    f"{HYBRID}, per-category thresholds": per_category_thresholds,
    "rule veto": rule_veto,
    "calibrated stack per category": calibrated_stack,
    f"{HYBRID}, threshold from the other folds": threshold_from_other_folds,
    f"{HYBRID}, student gated per category (inner dev)": student_gated_on_dev,
    f"{HYBRID}, student gated per category (other folds)": student_gated_on_other_folds,
    f"{HYBRID}, threshold by cue context": threshold_by_cue_context,
    f"{HYBRID}, rule veto per category (other folds)": rule_veto_per_category,
}
SEED_ENSEMBLE = f"{HYBRID}, seed ensemble"


@dataclass
class Pool:
    """The pool's rule hits and gold labels, computed once; rows in pool order."""

    names: tuple[str, ...]
    position: dict[str, int]  # sentence id -> row
    hits: np.ndarray  # sentences x categories, 0/1
    gold: np.ndarray  # sentences x categories, bool
    out_of_scope: np.ndarray  # sentences x categories, bool

    @classmethod
    def of(cls, records: Sequence[Record], names: Sequence[str], rules: Any) -> Pool:
        hits, out_of_scope = rules.scope_matrices([r.text for r in records], names)
        return cls(tuple(names), {r.id: i for i, r in enumerate(records)}, hits,
                   category_matrix([r.labels for r in records], names).astype(bool), out_of_scope)  # fmt: skip

    def rows(self, ids: Sequence[str]) -> list[int]:
        return [self.position[i] for i in ids]


def fold_views(pool: Pool, runs: Sequence[FoldRun]) -> list[tuple[FoldRun, FoldView]]:
    """Each fold's view: its scores and hits, its inner dev, and the other folds' out-of-fold data."""
    for run in runs:
        if run.scores is None or run.dev_scores is None or run.dev_ids is None:
            raise DataError(f"run {run.mix} seed {run.seed} fold {run.fold} has no scores; rerun the experiment")
    views = []
    for k, run in enumerate(runs):
        others = [j for j in range(len(runs)) if j != k]
        rows, dev = pool.rows(run.ids), pool.rows(run.dev_ids)
        other = [row for j in others for row in pool.rows(runs[j].ids)]
        views.append((run, FoldView(
            scores=np.asarray(run.scores), hits=pool.hits[rows], out_of_scope=pool.out_of_scope[rows],
            thresholds=np.asarray([run.thresholds[n] for n in pool.names]),
            dev_scores=np.asarray(run.dev_scores), dev_hits=pool.hits[dev], dev_gold=pool.gold[dev],
            dev_out_of_scope=pool.out_of_scope[dev],
            other_scores=np.concatenate([np.asarray(runs[j].scores) for j in others]),
            other_hits=pool.hits[other], other_gold=pool.gold[other], other_out_of_scope=pool.out_of_scope[other],
        )))  # fmt: skip
    return views


def seed_mean_views(per_seed: Sequence[Sequence[tuple[FoldRun, FoldView]]]) -> list[tuple[FoldRun, FoldView]]:
    """Each fold's view with the student's scores averaged over seeds (the seeds' folds and inner
    devs are the same sentences: ``cv.note_folds`` and ``cv.inner_split`` do not depend on the seed)."""
    merged = []
    for fold_views_of_seeds in zip(*per_seed, strict=True):
        run, first = fold_views_of_seeds[0]
        for other_run, _ in fold_views_of_seeds[1:]:
            if other_run.ids != run.ids or other_run.dev_ids != run.dev_ids:
                raise DataError(f"{run.mix} fold {run.fold}: the seeds' runs hold different sentences; rerun them")
        mean = {f: np.mean([getattr(v, f) for _, v in fold_views_of_seeds], axis=0)
                for f in ("scores", "thresholds", "dev_scores", "other_scores")}  # fmt: skip
        merged.append((run, FoldView(**{**first.__dict__, **mean})))
    return merged


def fold_labels(views: Sequence[tuple[FoldRun, FoldView]], combine: Combiner, pool: Pool, n: int) -> list[list[str]]:
    """One combiner's label sets for the pool (pool order), each fold decided from its own view."""
    labels: list[list[str]] = [[] for _ in range(n)]
    for run, view in views:
        for sentence_id, row in zip(run.ids, combine(view, pool.names), strict=True):
            labels[pool.position[sentence_id]] = [name for name, on in zip(pool.names, row, strict=True) if on]
    return labels


def finished_runs(cv: CrossValidation, mix: str, seed: int) -> list[FoldRun]:
    missing = [fold for fold in range(cv.settings.folds) if not cv.is_done(mix, seed, fold)]
    if missing:
        raise DataError(f"{mix} seed {seed}: folds {missing} have no finished run in {cv.dir}; "
                        "run the experiment first (python -m evals.run cv)")  # fmt: skip
    return [cv.run(mix, seed, fold) for fold in range(cv.settings.folds)]


def system_rows(mix: str, per_combiner: dict[str, list[list[list[str]]]], gold: Sequence[Sequence[str]],
                notes: Sequence[str], rule_list: list[list[list[str]]],
                taxonomy: Any) -> list[dict[str, Any]]:  # fmt: skip
    """One report row per combiner (label sets per seed): mean ± sd over seeds, paired CIs against the
    rule list and, but for the hybrid itself, against the hybrid (``per_combiner[HYBRID]``)."""
    rows = []
    for name, per_seed in per_combiner.items():
        row: dict[str, Any] = {"mix": mix, "combiner": name}
        row.update(headline_over_seeds([multilabel_scores(gold, p, taxonomy) for p in per_seed]))
        row["vs_rules"] = paired_ci(gold, notes, per_seed, rule_list, taxonomy)
        if name != HYBRID:
            row["vs_hybrid"] = paired_ci(gold, notes, per_seed, per_combiner[HYBRID], taxonomy)
        rows.append(row)
    return rows


def compare(task: Any, settings: CVSettings, *, work_dir: Path | None = None) -> dict[str, Any]:
    """Every combiner x the experiment's mixes x seeds, scored out of fold, with paired CIs."""
    if task.rules is None:
        raise DataError(f"task {task.name} has no rule list (rules.yaml): nothing to combine")
    cv = task_cross_validation(task, settings, work_dir=work_dir)
    pool, names = cv.pool, cv.names
    matrices = Pool.of(pool, names, task.rules)
    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    rule_list = [task.rules.predict([r.text for r in pool])]
    systems = []
    for mix in settings.mixes:
        per_combiner: dict[str, list[list[list[str]]]] = {name: [] for name in (*COMBINERS, SEED_ENSEMBLE)}
        seed_views = [fold_views(matrices, finished_runs(cv, mix, seed)) for seed in settings.seeds]
        for views in seed_views:
            for name, combine in COMBINERS.items():
                per_combiner[name].append(fold_labels(views, combine, matrices, len(pool)))
        per_combiner[SEED_ENSEMBLE].append(fold_labels(seed_mean_views(seed_views), rules_or_student, matrices,
                                                       len(pool)))  # fmt: skip
        systems += system_rows(mix, per_combiner, gold_sets, notes, rule_list, task.taxonomy)
    rules_scores = multilabel_scores(gold_sets, rule_list[0], task.taxonomy)
    return {"task": task.name, "n": len(pool), "notes": len(set(notes)), "folds": settings.folds,
            "seeds": list(settings.seeds), "systems": systems,
            "rule_list": {m: rules_scores[m] for m in HEADLINE}}  # fmt: skip


def systems_table(summary: dict[str, Any]) -> str:
    """The systems of a ``compare`` summary with their CIs against the rule list and the hybrid, and the rule list."""
    headers = ["student mix", "combiner", "micro F1", "macro F1", "Δ micro vs rule list", "Δ macro vs rule list",
               f"Δ micro vs {HYBRID}", f"Δ macro vs {HYBRID}"]  # fmt: skip
    rows = [[r["mix"], r["combiner"], mean_sd_text(r["micro_f1"]), mean_sd_text(r["macro_f1"]),
             *(interval_text(r["vs_rules"][m]) for m in ("micro_f1", "macro_f1")),
             *(interval_text(r.get("vs_hybrid", {}).get(m)) for m in ("micro_f1", "macro_f1"))]
            for r in summary["systems"]]  # fmt: skip
    rules = summary["rule_list"]
    rows.append(["-", RULE_LIST, f"{rules['micro_f1']:.3f}", f"{rules['macro_f1']:.3f}", "-", "-", "-", "-"])
    return format_table(headers, rows)


def render(summary: dict[str, Any], command: str) -> str:
    best = max(summary["systems"], key=lambda r: (r["micro_f1"][0] + r["macro_f1"][0]) / 2)
    lines = [
        "# Combining the rule list with the student (cross-validated)",
        "",
        f"Command: `{command}`. The experiment's finished fold runs ({summary['n']} gold train + dev sentences, "
        f"{summary['notes']} notes, {summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}); "
        "nothing is trained. Each combiner is fitted on held-out data only (the fold's inner dev, or the other "
        "folds' out-of-fold scores of the same seed) and decides the fold. Mean ± sd over seeds; Δ: paired "
        "bootstrap 95% interval over notes. The seed ensemble is one prediction set (the hybrid over the mean of "
        "the seeds' scores), so its sd is 0. How each combiner works: the docstring of `evals/combiners.py`.",
        "",
        systems_table(summary),
        "",
        f"Best by mean of micro and macro F1: `{best['mix']}` with `{best['combiner']}` "
        f"(micro {best['micro_f1'][0]:.3f}, macro {best['macro_f1'][0]:.3f}).",
        "",
    ]
    return "\n".join(lines)


def write(task: Any, settings: CVSettings, out_dir: Path, command: str, *,
          work_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    summary = compare(task, settings, work_dir=work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    path = out_dir / f"{REPORT}.md"
    atomic_write_text(path, render(summary, command))
    return path, summary

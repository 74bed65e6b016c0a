"""Cross-validation on whole notes: the natural distribution a user meets, scored out of fold.

The experiment's pool (gold train + dev) holds the sentences picked for annotation, enriched
for categories by keywords. Some of its notes are also kept whole (``whole_train_notes.jsonl``,
``whole_dev_notes.jsonl``): every sentence, mostly NONE. Each fold run scores the extra
sentences of its held-out notes and of its inner dev's notes (``FoldRun.whole_ids``,
``dev_whole_ids``; the view retrains a finished run that has none, with the same
predictions: ``CrossValidation.run(..., whole_scores=True)``), so every sentence of those
whole notes gets an out-of-fold decision once a seed. This suite scores, on the enriched pool
and on those whole notes:

- the rule list;
- each mix's student at its own thresholds;
- ``MIX+rules``: the hybrid as every report fits it, on the fold's inner dev;
- ``MIX+rules, fitted with whole dev notes``: the hybrid fitted on the inner dev together with
  the whole-note sentences of its notes (a saved model fitted on gold dev and the whole dev notes
  until this comparison found it worse; it now fits on gold dev alone, ``clinsynth.model.train``);

with paired CIs (notes resampled, seeds averaged inside) against the rule list, of each hybrid
fitted with the whole dev notes against the same hybrid without them and, for two mixes, of the
first against the second. Gold test is not read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.core import headline_over_seeds, mean_sd_text, mean_std
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
from clinsynth.evals.cv_report import interval_text, vs_rules_table

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import HYBRID_SUFFIX, MixSources
from clinsynth.data.records import Record
from clinsynth.data.rules import RuleSet
from clinsynth.errors import DataError
from clinsynth.model.hybrid import RuleStack
from clinsynth.model.metrics import multilabel_scores
from clinsynth.report import format_table

REPORT = "whole_view"
FIT_WHOLE = ", fitted with whole dev notes"
SETS = ("enriched pool", "whole notes")


def fold_decisions(run: FoldRun, by_id: dict[str, Record], names: Sequence[str],
                   rules: RuleSet) -> tuple[dict[str, dict[str, list[str]]], dict[str, float]]:  # fmt: skip
    """One fold run's decisions on its pool and whole-note sentences, id -> labels per system
    (student, hybrid, hybrid fitted with whole dev notes), and the two hybrids' thresholds."""
    if run.scores is None or run.dev_scores is None or run.dev_ids is None or run.whole_ids is None:
        raise DataError(f"run {run.mix} seed {run.seed} fold {run.fold} has no whole-note scores; "
                        "read it with CrossValidation.run(..., whole_scores=True)")  # fmt: skip
    ids = [*run.ids, *run.whole_ids]
    scores = np.asarray([*run.scores, *(run.whole_scores or [])])
    texts = [by_id[i].text for i in ids]
    cut = np.asarray([run.thresholds[n] for n in names])
    dev = [by_id[i] for i in run.dev_ids]
    dev_whole = [by_id[i] for i in run.dev_whole_ids or []]
    stacks = {
        HYBRID_SUFFIX: RuleStack.fit_held_out(names, np.asarray(run.dev_scores), dev, rules),
        HYBRID_SUFFIX + FIT_WHOLE: RuleStack.fit_held_out(
            names, np.asarray([*run.dev_scores, *(run.dev_whole_scores or [])]), dev + dev_whole, rules),
    }  # fmt: skip
    student = [[n for n, hit in zip(names, row >= cut, strict=True) if hit] for row in scores]
    out = {run.mix: dict(zip(ids, student, strict=True))}
    for suffix, stack in stacks.items():
        out[run.mix + suffix] = dict(zip(ids, stack.predict(names, scores, texts, rules), strict=True))
    return out, {suffix: stack.threshold for suffix, stack in stacks.items()}


@dataclass
class View:
    """Out-of-fold decisions of every mix's systems and of the rule list on the pool and its whole notes."""

    sets: dict[str, list[Record]]  # SETS -> records
    decided: dict[str, list[dict[str, list[str]]]]  # system -> per seed, id -> labels
    thresholds: dict[str, list[float]]  # hybrid -> its threshold per seed and fold


def view_cross_validation(task: Any, settings: CVSettings, *, sources: MixSources | None = None,
                          work_dir: Path | None = None) -> CrossValidation:  # fmt: skip
    """The cross-validation whose runs the view reads (``decide_view`` retrains a finished run
    without whole-note scores for them)."""
    if task.rules is None:
        raise DataError("the whole-note view compares with the task's rule list: add rules.yaml", path=task.root)
    # The view reads whole-note scores: its plan counts the finished runs it retrains for them, so
    # each retrained run's line gives the time left.
    cv = task_cross_validation(task, replace(settings, whole_view=True), sources=sources, work_dir=work_dir)
    cv.plan()
    return cv


def decide_view(task: Any, cv: CrossValidation) -> View:
    """Every (mix, seed, fold) run's decisions on the pool and on its whole notes."""
    if not cv.whole_extras:
        raise DataError("no whole train or dev notes in this gold folder: nothing to view", path=task.gold_dir)
    settings, pool = cv.settings, cv.pool
    names = list(task.taxonomy.names)
    whole_note_ids = {note_of(r) for r in cv.whole_extras}
    sets = {SETS[0]: list(pool), SETS[1]: [r for r in pool if note_of(r) in whole_note_ids] + cv.whole_extras}
    by_id = {r.id: r for r in [*pool, *cv.whole_extras]}
    view = View(sets, {}, {})
    for mix in settings.mixes:
        for seed in settings.seeds:
            print(f"whole notes: {mix} seed {seed}", flush=True)
            per_system: dict[str, dict[str, list[str]]] = {}
            for fold in range(settings.folds):
                found, fitted = fold_decisions(cv.run(mix, seed, fold, whole_scores=True), by_id, names, task.rules)
                for system, labels in found.items():
                    per_system.setdefault(system, {}).update(labels)
                for suffix, t in fitted.items():
                    view.thresholds.setdefault(mix + suffix, []).append(t)
            for system, labels in per_system.items():
                view.decided.setdefault(system, []).append(labels)
    view.decided[RULE_LIST] = [dict(zip(by_id, task.rules.predict([r.text for r in by_id.values()]), strict=True))]
    return view


def experiment_view(task: Any, experiment: CrossValidation, systems: Sequence[str]) -> dict[str, Any] | None:
    """The experiment report's whole-note line: ``systems`` (the report's mixes and hybrids) and the rule
    list scored on the pool's whole notes out of fold, with paired CIs against the rule list; None where
    the pool holds fewer than two whole notes."""
    cv = view_cross_validation(task, experiment.settings, sources=experiment.sources, work_dir=experiment.dir)
    if len({note_of(r) for r in cv.whole_extras}) < 2:
        return None  # a notes-resampled CI needs two notes (a quick run's small pool may hold fewer)
    view = decide_view(task, cv)
    decided = {s: view.decided[s] for s in [*systems, RULE_LIST] if s in view.decided}
    return score_set(view.sets[SETS[1]], decided, [], task.taxonomy)


def whole_view(task: Any, settings: CVSettings, out_dir: Path, command: str, *,
               work_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Score every mix's students and hybrids on the pool and on its whole notes; write ``whole_view.{md,json}``."""
    view = decide_view(task, view_cross_validation(task, settings, work_dir=work_dir))
    # What fitting the hybrid with the whole dev notes changes, per mix; then the first mix against the second.
    mixes = settings.mixes
    compared = [(mix + HYBRID_SUFFIX + FIT_WHOLE, mix + HYBRID_SUFFIX) for mix in mixes]
    if len(mixes) >= 2:
        suffixes = ("", HYBRID_SUFFIX, HYBRID_SUFFIX + FIT_WHOLE)
        compared += [(mixes[0] + suffix, mixes[1] + suffix) for suffix in suffixes]
    summary: dict[str, Any] = {
        "mixes": list(mixes), "folds": settings.folds, "seeds": list(settings.seeds),
        "thresholds": {s: mean_std(t) for s, t in view.thresholds.items()},
        "sets": {name: score_set(records, view.decided, compared, task.taxonomy)
                 for name, records in view.sets.items()},
    }  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    md = out_dir / f"{REPORT}.md"
    atomic_write_text(md, render(summary, command))
    return md, summary


def score_set(records: Sequence[Record], decided: dict[str, list[dict[str, list[str]]]],
              compared: Sequence[tuple[str, str]], taxonomy: Any) -> dict[str, Any]:  # fmt: skip
    """Each system's scores on ``records`` with paired CIs against the rule list, and each ``(new, base)``
    pair of ``compared``."""
    truth = [list(r.labels) for r in records]
    notes = [note_of(r) for r in records]

    def runs(system: str) -> list[list[list[str]]]:
        return [[labels[r.id] for r in records] for labels in decided[system]]

    rows = []
    for system in decided:
        scores = [multilabel_scores(truth, p, taxonomy) for p in runs(system)]
        row: dict[str, Any] = {"system": system, **headline_over_seeds(scores)}
        if system != RULE_LIST:
            row["vs_rules"] = paired_ci(truth, notes, runs(system), runs(RULE_LIST), taxonomy)
        rows.append(row)
    pairs = [{"new": new, "base": base, "ci": paired_ci(truth, notes, runs(new), runs(base), taxonomy)}
             for new, base in compared]  # fmt: skip
    none = sum(1 for t in truth if not t)
    return {"sentences": len(records), "notes": len(set(notes)), "none": none, "systems": rows, "pairs": pairs}


def render(summary: dict[str, Any], command: str) -> str:
    lines = [
        "# Cross-validation on whole notes",
        "",
        f"Command: `{command}`",
        "",
        " ".join([
            f"{summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))};",
            "every sentence scored out of fold once a seed.",
            "*enriched pool*: gold train + dev, the sentences picked for annotation.",
            "*whole notes*: every sentence of the pool's notes that are kept whole",
            "(the gold folder's whole train and dev notes), mostly NONE, as a user's notes are.",
            "`+rules` is the hybrid fitted on the fold's inner dev, as in every report;",
            f"`+rules{FIT_WHOLE}` is fitted on the inner dev together with the whole-note sentences of its notes,",
            "the way a saved model was fitted before this view found it worse (it now fits on gold dev alone).",
            "Scores are mean ± sd over seeds; Δ columns are paired bootstrap 95% intervals over notes,",
            "seeds averaged inside.",
        ]),
        "",
        "Hybrid thresholds over folds and seeds (mean ± sd): "
        + "; ".join(f"`{s}` {mean_sd_text(t)}" for s, t in summary["thresholds"].items()) + ".",
        "",
    ]  # fmt: skip
    for set_name, scored in summary["sets"].items():
        lines += [f"## {set_name} ({scored['sentences']} sentences, {scored['notes']} notes, "
                  f"{scored['none']} of them NONE)", ""]  # fmt: skip
        lines += [vs_rules_table(scored["systems"]), ""]
        if scored["pairs"]:
            rows = [[f"`{p['new']}` - `{p['base']}`", *(interval_text(p["ci"][m]) for m in HEADLINE)]
                    for p in scored["pairs"]]  # fmt: skip
            lines += [format_table(["paired difference", "micro F1", "macro F1", "binary F1"], rows), ""]
    return "\n".join(lines)

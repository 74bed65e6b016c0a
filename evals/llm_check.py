"""The hybrid with the LLM's second opinion on what the student adds, on the experiment's fold runs.

In the hybrid (a rule hit, or the student above its threshold) the rule hits are the precise
part; the student's additions beyond them carry most of its errors. This suite asks the
task's labeller LM about each (sentence, category) the hybrid adds beyond the rule list in any
seed (``clinsynth.programs.verify_category.CategoryCheck``: one sentence, one category, only
that category's part of the guideline in the prompt), and scores beside the hybrid, on the
same folds, seeds and students:

- ``rules or student, LLM-checked additions``: an addition stands only if the LLM says yes
  (one it could not answer after retries stands);
- ``rules or student, LLM check per category (other folds)``: the check only in the categories
  where it raised the category's F1 on the other folds of the same seed;
- ``rules or student, LLM check below a score (other folds)``: only the additions the student
  scored under a bar are asked about; its confident ones stand. The bar is fitted on the other
  folds of the same seed (the best mean of micro and macro F1 over ``BELOW_GRID``; on a tie the
  lowest, the fewest calls). A saved model takes the bar fitted on every fold and seed (``below``).

This is the cascade the field uses to put a cheap classifier and an LLM together: the LLM is
asked only where the cheap parts are unsure, a few hundred calls instead of one per sentence
and category. Nothing is trained; the answers are cached by DSPy, so a rerun asks nothing
again. Gold train + dev sentences go to the LM: the privacy session checks the endpoint first.
Gold test is not read.

Where the task scores whole notes (``[experiment] whole_view``), the hybrid and the checked
hybrid are also scored on every sentence of the pool's whole notes, out of fold
(``evals.whole_view``): there most sentences are NONE, so an addition is more often wrong
than on the enriched pool, and the check may pay where it did not. The check is adopted as
the default mix is chosen, on both sets (``adopted``).

``--neighbours K`` asks with ``NeighbourCheck`` instead: K annotated pool sentences per side
beside each question, none from the sentence's own note. It writes a side report (``--out-dir``):
saved models ask without neighbours, so such a report chooses nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.combiners import (
    HYBRID,
    Pool,
    finished_runs,
    fold_views,
    per_category_f1,
    rules_or_student,
    system_rows,
    systems_table,
)
from clinsynth.evals.cv import HEADLINE, CVSettings, note_of, task_cross_validation
from clinsynth.evals.whole_view import SETS, decide_view, view_cross_validation
from clinsynth.programs.addition_check import AdditionCheck, additions
from clinsynth.programs.verify_category import NeighbourCheck, Neighbours

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import HYBRID_SUFFIX
from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import Record
from clinsynth.data.task import LMSpec
from clinsynth.errors import DataError
from clinsynth.llm.lm import LMHandle
from clinsynth.llm.session import Content
from clinsynth.model.metrics import category_matrix, micro_macro_f1, multilabel_scores
from clinsynth.report import format_table

REPORT = "llm-check"
CHECKED = f"{HYBRID}, LLM-checked additions"
GATED = f"{HYBRID}, LLM check per category (other folds)"
SCORED = f"{HYBRID}, LLM check below a score (other folds)"
BELOW_GRID = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, float("inf"))  # inf: every addition is asked
Cell = tuple[str, str]  # (sentence id, category)


def checked(decided: np.ndarray, hits: np.ndarray, ids: Sequence[str], names: Sequence[str],
            answers: dict[Cell, bool]) -> np.ndarray:  # fmt: skip
    """The hybrid's decisions without the additions the LLM said no to (an unanswered one stays)."""
    out = decided.copy()
    for i, j in zip(*np.nonzero(additions(decided, hits)), strict=True):
        if answers.get((ids[i], names[j])) is False:
            out[i, j] = False
    return out


def below_checked(decided: np.ndarray, with_check: np.ndarray, scores: np.ndarray, below: Any) -> np.ndarray:
    """The checked hybrid where only the additions scored under ``below`` (a number, or one per sentence as a
    column) were asked about: a confident addition stands whatever the LLM said."""
    return with_check | (decided & (scores >= below))


def fit_below(folds: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """The bar of ``BELOW_GRID`` with the best mean of micro and macro F1 on ``folds`` (decided, checked,
    scores, gold); on a tie the lowest (the fewest LLM calls)."""
    gold = np.concatenate([f[3] for f in folds])

    def value(below: float) -> float:
        return round(micro_macro_f1(np.concatenate([below_checked(f[0], f[1], f[2], below) for f in folds]), gold), 9)

    return max(BELOW_GRID, key=lambda below: (value(below), -below))


def check_helps(with_check: np.ndarray, without: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """Per category: the check raised its F1 on these held-out sentences (a tie keeps the hybrid)."""
    return per_category_f1(with_check, gold) > per_category_f1(without, gold)


def ask(task: Any, cells: Sequence[Cell], records: dict[str, Record], handle: LMHandle | None,
        lm: LMSpec | None = None, threads: int = 1,
        neighbours: Neighbours | None = None) -> tuple[dict[Cell, bool], int, float, str]:  # fmt: skip
    """The LLM's yes/no per cell (failed cells left out), the number that failed, seconds, and the LM's name.

    The LM is ``handle`` (tests), else ``lm``, else the task's labeller, opened after the privacy check;
    it is asked as a saved model asks it (``AdditionCheck``), or with ``neighbours`` shown beside each
    question (``NeighbourCheck``; none from the sentence's own note).
    """
    splits = ", ".join(task.relative(task.split_path(s)) for s in ("train", "dev"))
    program = NeighbourCheck(task.taxonomy, neighbours) if neighbours else None
    check = AdditionCheck.open(task, [Content(f"gold train + dev ({splits}) and their whole notes",
                                              Sensitivity.PRIVATE)], handle,
                               lm=lm, program=program, threads=threads, show_progress=True)  # fmt: skip
    ids = list(records)
    position = {sentence_id: i for i, sentence_id in enumerate(ids)}
    notes = [note_of(records[i]) for i in ids] if neighbours else None
    started = time.monotonic()
    said = check.answers([records[i].text for i in ids],
                         [(position[sentence_id], name) for sentence_id, name in cells], notes)  # fmt: skip
    answers = {(ids[i], name): answer for (i, name), answer in said.items()}
    return answers, len(cells) - len(answers), time.monotonic() - started, check.handle.name


def adopted(systems: Sequence[dict[str, Any]], whole: Sequence[dict[str, Any]] = (),
            combiner: str = CHECKED) -> dict[str, bool]:  # fmt: skip
    """Per student mix, whether ``combiner`` (a way of checking additions with the LLM) earns its place in
    the default model: it beat the hybrid with a paired 95% CI above 0 on micro or macro F1, on the enriched
    pool (``systems``) or on whole notes (``whole``), and was worse with a CI below 0 on neither. A tie is
    not enough: the check costs an LLM call per addition wherever the model runs."""
    rows = [row for row in (*systems, *whole) if row["combiner"] == combiner]
    gains = {row["mix"]: False for row in rows}
    harms = dict(gains)
    for row in rows:
        gains[row["mix"]] |= any(row["vs_hybrid"][m]["low"] > 0 for m in ("micro_f1", "macro_f1"))
        harms[row["mix"]] |= any(row["vs_hybrid"][m]["high"] < 0 for m in ("micro_f1", "macro_f1"))
    return {mix: gains[mix] and not harms[mix] for mix in gains}


def choose(systems: Sequence[dict[str, Any]], whole: Sequence[dict[str, Any]],
           fitted: dict[str, float]) -> tuple[dict[str, bool], dict[str, float]]:  # fmt: skip
    """Per student mix, whether the default model checks additions, and the bar under which it asks
    (absent: every addition) where checking below a score was adopted and scored at least as well as
    checking every addition (mean of micro and macro F1 over both sets)."""
    every, scored = adopted(systems, whole, CHECKED), adopted(systems, whole, SCORED)

    def mean(mix: str, combiner: str) -> float:
        rows = [r for r in (*systems, *whole) if r["mix"] == mix and r["combiner"] == combiner]
        return float(np.mean([r[m][0] for r in rows for m in ("micro_f1", "macro_f1")]))

    below = {mix: fitted[mix] for mix, on in scored.items()
             if on and fitted[mix] != float("inf") and (not every[mix] or mean(mix, SCORED) >= mean(mix, CHECKED))}
    return {mix: every[mix] or scored.get(mix, False) for mix in every}, below


def check_table(cells: Sequence[Cell], answers: dict[Cell, bool], gold: dict[Cell, bool],
                names: Sequence[str]) -> dict[str, dict[str, int]]:  # fmt: skip
    """Per category, the distinct additions asked about: kept or dropped by the LLM, right or wrong by gold."""
    table = {n: {"asked": 0, "kept_right": 0, "kept_wrong": 0, "dropped_right": 0, "dropped_wrong": 0} for n in names}
    for cell in cells:
        row = table[cell[1]]
        row["asked"] += 1
        if cell in answers:
            row[f"{'kept' if answers[cell] else 'dropped'}_{'right' if gold[cell] else 'wrong'}"] += 1
    return table


Scored = dict[str, tuple[int, np.ndarray]]  # sentence id -> (its fold, the student's scores)


def whole_note_hybrids(task: Any, settings: CVSettings, work_dir: Path | None
                       ) -> tuple[list[Record], dict[str, list[dict[str, list[str]]]],
                                  dict[str, list[Scored]]] | None:  # fmt: skip
    """Every sentence of the pool's whole notes; per mix, the hybrid's out-of-fold labels on them per seed
    (id -> labels) and the student's scores and fold per seed; None where the task does not score whole
    notes or holds fewer than two."""
    if not settings.whole_view:
        return None
    cv = view_cross_validation(task, settings, work_dir=work_dir)
    if len({note_of(r) for r in cv.whole_extras}) < 2:
        return None  # a notes-resampled CI needs two notes
    view = decide_view(task, cv)
    scored: dict[str, list[Scored]] = {}
    for mix in settings.mixes:
        for seed in settings.seeds:
            per_seed: Scored = {}
            for fold in range(settings.folds):
                run = cv.run(mix, seed, fold, whole_scores=True)
                rows = [*(run.scores or []), *(run.whole_scores or [])]
                per_seed.update({i: (fold, np.asarray(row)) for i, row in zip([*run.ids, *(run.whole_ids or [])],
                                                                              rows, strict=True)})  # fmt: skip
            scored.setdefault(mix, []).append(per_seed)
    return view.sets[SETS[1]], {mix: view.decided[mix + HYBRID_SUFFIX] for mix in settings.mixes}, scored


def label_sets(matrix: np.ndarray, names: Sequence[str]) -> list[list[str]]:
    return [[n for n, on in zip(names, row, strict=True) if on] for row in matrix]


def compare(task: Any, settings: CVSettings, *, handle: LMHandle | None = None, lm: LMSpec | None = None,
            threads: int = 1, work_dir: Path | None = None, neighbours: int = 0) -> dict[str, Any]:  # fmt: skip
    """The hybrid, with the LLM check and gated per category, x the mixes x seeds, with paired CIs; the
    hybrid and the checked hybrid also on whole notes where the task scores them. ``neighbours``: show the
    LLM that many annotated pool sentences per side beside each question (``NeighbourCheck``); 0: none."""
    if task.rules is None:
        raise DataError(f"task {task.name} has no rule list (rules.yaml): the hybrid needs it")
    cv = task_cross_validation(task, settings, work_dir=work_dir)
    pool, names = cv.pool, cv.names
    matrices = Pool.of(pool, names, task.rules)
    runs = {(mix, seed): [(run, view, rules_or_student(view, names))
                          for run, view in fold_views(matrices, finished_runs(cv, mix, seed))]
            for mix in settings.mixes for seed in settings.seeds}  # fmt: skip
    asked = {(run.ids[i], names[j]) for folds in runs.values() for run, view, decided in folds
             for i, j in zip(*np.nonzero(additions(decided, view.hits)), strict=True)}  # fmt: skip
    whole = whole_note_hybrids(task, settings, work_dir)
    whole_records = whole[0] if whole else []
    whole_ids = [r.id for r in whole_records]
    whole_hits = task.rules.scope_matrices([r.text for r in whole_records], names)[0] if whole else None
    whole_decided = {mix: [category_matrix([labels[i] for i in whole_ids], names).astype(bool) for labels in per_seed]
                     for mix, per_seed in (whole[1] if whole else {}).items()}  # fmt: skip
    asked |= {(whole_ids[i], names[j]) for per_seed in whole_decided.values() for decided in per_seed
              for i, j in zip(*np.nonzero(additions(decided, whole_hits)), strict=True)}  # fmt: skip
    # Grouped by category, so consecutive calls share the cached prompt prefix.
    cells = sorted(asked, key=lambda cell: (cell[1], cell[0]))
    by_id = {r.id: r for r in [*pool, *whole_records]}
    shown = Neighbours(pool, neighbours) if neighbours else None
    answers, failed, seconds, lm_name = ask(task, cells, by_id, handle, lm, threads, shown)
    gold_cells = {cell: cell[1] in by_id[cell[0]].labels for cell in cells}

    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    rule_list = [task.rules.predict([r.text for r in pool])]
    systems = []
    bars: dict[tuple[str, int, int], float] = {}  # (mix, seed, fold) -> the bar fitted on the other folds
    fitted: dict[str, float] = {}  # mix -> the bar fitted on every fold and seed (a saved model's)
    for mix in settings.mixes:
        per_system: dict[str, list[list[list[str]]]] = {HYBRID: [], CHECKED: [], GATED: [], SCORED: []}
        everything = []
        for seed in settings.seeds:
            folds = [(run, decided, checked(decided, view.hits, run.ids, names, answers),
                      matrices.gold[matrices.rows(run.ids)], view.scores)
                     for run, view, decided in runs[(mix, seed)]]  # fmt: skip
            everything += [(f[1], f[2], f[4], f[3]) for f in folds]
            labels: dict[str, list[list[str]]] = {name: [[] for _ in pool] for name in per_system}
            for k, (run, decided, with_check, _, scores) in enumerate(folds):
                others = [f for j, f in enumerate(folds) if j != k]
                use = check_helps(*(np.concatenate([f[i] for f in others]) for i in (2, 1, 3)))
                bars[(mix, seed, k)] = fit_below([(f[1], f[2], f[4], f[3]) for f in others])
                decisions = {HYBRID: decided, CHECKED: with_check, GATED: np.where(use, with_check, decided),
                             SCORED: below_checked(decided, with_check, scores, bars[(mix, seed, k)])}
                for name, matrix in decisions.items():
                    for sentence_id, row in zip(run.ids, label_sets(matrix, names), strict=True):
                        labels[name][matrices.position[sentence_id]] = row
            for name in per_system:
                per_system[name].append(labels[name])
        systems += system_rows(mix, per_system, gold_sets, notes, rule_list, task.taxonomy)
        fitted[mix] = fit_below(everything)
    rules_scores = multilabel_scores(gold_sets, rule_list[0], task.taxonomy)
    summary = {"task": task.name, "n": len(pool), "notes": len(set(notes)), "folds": settings.folds,
               "seeds": list(settings.seeds), "lm": lm_name, "neighbours": neighbours, "cells": len(cells),
               "failed": failed, "seconds": round(seconds, 1), "systems": systems,
               "rule_list": {m: rules_scores[m] for m in HEADLINE},
               "check": check_table(cells, answers, gold_cells, names), "whole": None}  # fmt: skip
    if whole:
        truth = [list(r.labels) for r in whole_records]
        whole_notes = [note_of(r) for r in whole_records]
        whole_rules = [task.rules.predict([r.text for r in whole_records])]
        whole_systems = []
        for mix, per_seed in whole_decided.items():
            per: dict[str, list[list[list[str]]]] = {HYBRID: [], CHECKED: [], SCORED: []}
            for seed, decided, scored in zip(settings.seeds, per_seed, whole[2][mix], strict=True):
                with_check = checked(decided, whole_hits, whole_ids, names, answers)
                scores = np.asarray([scored[i][1] for i in whole_ids])
                bar = np.asarray([[bars[(mix, seed, scored[i][0])]] for i in whole_ids])
                for name, matrix in ((HYBRID, decided), (CHECKED, with_check),
                                     (SCORED, below_checked(decided, with_check, scores, bar))):
                    per[name].append(label_sets(matrix, names))
            whole_systems += system_rows(mix, per, truth, whole_notes, whole_rules, task.taxonomy)
        scores = multilabel_scores(truth, whole_rules[0], task.taxonomy)
        summary["whole"] = {"sentences": len(whole_records), "notes": len(set(whole_notes)),
                            "none": sum(1 for t in truth if not t), "systems": whole_systems,
                            "rule_list": {m: scores[m] for m in HEADLINE}}  # fmt: skip
    summary["fitted_below"] = {mix: (None if b == float("inf") else b) for mix, b in fitted.items()}
    summary["adopted"], summary["below"] = choose(systems, summary["whole"]["systems"] if whole else (), fitted)
    return summary


def adoption_words(adopted_mixes: dict[str, bool], below: dict[str, float] | None = None) -> str:
    below = below or {}
    chosen = [f"`{m}`" + (f" (asking only about additions scored under {below[m]})" if m in below else
                          " (asking about every addition)") for m, on in adopted_mixes.items() if on]  # fmt: skip
    words = ("The check is adopted for the hybrid of " + ", ".join(chosen)
             if chosen else "The check is adopted for no hybrid")  # fmt: skip
    return (f"{words}: a default model on such a hybrid (as `clinsynth run` and `clinsynth predict` train it; "
            "`clinsynth train --llm-check`) asks the labeller LM about its additions "
            "(`clinsynth.programs.addition_check`). The rule, on both sets as the default mix is chosen: checking "
            "every addition, or checking below a score, beat the hybrid with a paired 95% CI above 0 on micro or "
            "macro F1, on the enriched pool or on whole notes, and was worse with a CI below 0 on neither "
            "(`adopted` and `choose` in `evals/llm_check.py`; where both pass, the better by the mean of micro "
            "and macro F1); a tie is not worth an LLM call per addition.")


def whole_lines(whole: dict[str, Any] | None) -> list[str]:
    if not whole:
        return []
    return [f"## Whole notes (out of fold: {whole['sentences']} sentences, {whole['notes']} notes, "
            f"{whole['none']} of them NONE)", "",
            "Every sentence of the pool's notes kept whole, decided by the same fold runs (`evals.whole_view`): "
            "the distribution a user's notes have.", "", systems_table(whole), ""]  # fmt: skip


def neighbour_words(shown: int) -> str:
    if not shown:
        return ""
    return (f"Beside each question the LLM was shown the {shown} most similar pool sentences that document the "
            f"category and the {shown} most similar that do not, with their answers, none from the asked "
            "sentence's own note (`NeighbourCheck`, MiniLM similarity). ")


def render(summary: dict[str, Any], command: str) -> str:
    check, shown = summary["check"], summary.get("neighbours", 0)
    headers = ["category", "additions asked", "kept, right", "kept, wrong", "dropped, right", "dropped, wrong"]
    rows = [[n, c["asked"], c["kept_right"], c["kept_wrong"], c["dropped_right"], c["dropped_wrong"]]
            for n, c in check.items()]  # fmt: skip
    total = {k: sum(c[k] for c in check.values()) for k in next(iter(check.values()))}
    rows.append(["all", *total.values()])
    kept = total["kept_right"] + total["kept_wrong"]
    dropped = total["dropped_right"] + total["dropped_wrong"]
    lines = [
        "# The hybrid with an LLM check on the student's additions (cross-validated)",
        "",
        f"Command: `{command}`. LM: `{summary['lm']}`. The experiment's finished fold runs ({summary['n']} gold train "
        f"+ dev sentences, {summary['notes']} notes, {summary['folds']} folds by note, seeds "
        f"{', '.join(map(str, summary['seeds']))}); nothing is trained. The LLM was asked about the "
        f"{summary['cells']} distinct (sentence, category) cells the hybrid adds beyond the rule list in some seed, "
        "on the pool or on its whole notes "
        f"({summary['failed']} unanswered after retries, kept; {summary['seconds']:.0f} s, DSPy cache hits included). "
        f"{neighbour_words(shown)}"
        "Mean ± sd over seeds; Δ: paired bootstrap 95% interval over notes. How it works: the docstring of "
        "`evals/llm_check.py`.",
        "",
        systems_table(summary),
        "",
        *whole_lines(summary.get("whole")),
        adoption_words(summary.get("adopted", {}), summary.get("below")) if not shown else
        "A saved model asks without neighbours (`CategoryCheck`): this report measures the question with them, "
        "beside the task's `llm-check.md`, which chooses the default model's check.",
        "",
        "## What the LLM said about the additions (distinct cells, right or wrong by gold)",
        "",
        format_table(headers, rows),
        "",
        f"Of the additions it kept, {total['kept_right'] / max(1, kept):.0%} are right; of those it dropped, "
        f"{total['dropped_right'] / max(1, dropped):.0%} were right.",
        "",
    ]
    return "\n".join(lines)


def write(task: Any, settings: CVSettings, out_dir: Path, command: str, *, handle: LMHandle | None = None,
          lm: LMSpec | None = None, threads: int = 1, work_dir: Path | None = None,
          neighbours: int = 0) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    summary = compare(task, settings, handle=handle, lm=lm, threads=threads, work_dir=work_dir, neighbours=neighbours)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    path = out_dir / f"{REPORT}.md"
    atomic_write_text(path, render(summary, command))
    return path, summary

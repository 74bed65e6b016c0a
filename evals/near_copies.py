"""Is the cross-validated lead over the rule list made of near-copies?

MTSamples files some notes twice (under two specialties, a word or a date changed), so a
sentence held out by a fold may have a near-copy among the sentences its student trained on,
although folds are split by note. A student that remembers it scores that sentence for free;
the rule list gets nothing from it. This suite marks, per fold, the held-out sentences with a
near-copy in what the fold may train on: the other folds' gold sentences, the whole-note
sentences of their notes, and the task's bronze (shared by every fold). It then scores the
hybrid of every report (``MIX+rules``, fitted on the fold's inner dev as always) against the
rule list on all sentences, on those without a near-copy, and on the near-copies alone, with
paired CIs. Gold test is counted, not scored: how many held-out test sentences (after the exact
repeats ``clinsynth.data.gold.unseen`` leaves out) still have a near-copy in gold train, dev or
their whole notes.

A near-copy: character 3-5-gram TF-IDF cosine at least ``CUTOFF`` (0.9 keeps rewordings of one
sentence, such as a changed age or drug dose, and leaves out sentences that only share a
template opening). Nothing is trained: every run must already be in the task's
``reports/cv-runs/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.combiners import Pool, finished_runs, fold_labels, fold_views, rules_or_student
from clinsynth.evals.core import headline_over_seeds, mean_sd_text
from clinsynth.evals.cv import RULE_LIST, CVSettings, note_of, paired_ci, task_cross_validation
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.gold import trainable_whole_sentences, unseen
from clinsynth.data.mixes import HYBRID_SUFFIX
from clinsynth.data.records import Record
from clinsynth.errors import DataError
from clinsynth.model.metrics import multilabel_scores
from clinsynth.report import format_table

REPORT = "near_copies"
CUTOFF = 0.9
SUBSETS = ("all", "without a near-copy", "near-copies only")


def cosines(texts: Sequence[str], *references: Sequence[str]) -> list[np.ndarray]:
    """texts x each reference: character 3-5-gram TF-IDF cosine, one vocabulary fitted on all of them
    (so a cutoff means the same against every reference)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    everything = [*texts, *(t for reference in references for t in reference)]
    if not texts or len(everything) == len(texts):
        return [np.zeros((len(texts), len(reference))) for reference in references]
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit(everything)
    rows = vectors.transform(texts)
    return [(rows @ vectors.transform(reference).T).toarray() if reference else np.zeros((len(texts), 0))
            for reference in references]  # fmt: skip


def fold_near_copies(pool: Sequence[Record], fold_ids: Sequence[Sequence[str]], extras: Sequence[Record],
                     shared: Sequence[str], cutoff: float = CUTOFF) -> np.ndarray:  # fmt: skip
    """Per pool sentence (pool order), whether a sentence its fold may train on is a near-copy of it:
    a pool sentence of another fold, a whole-note sentence (``extras``) of a note outside the fold,
    or any of ``shared`` (data every fold trains on, such as bronze)."""
    position = {r.id: i for i, r in enumerate(pool)}
    texts = [r.text for r in pool]
    with_pool, with_extras, with_shared = cosines(texts, texts, [r.text for r in extras], list(shared))
    extra_notes = np.asarray([note_of(r) for r in extras])
    near = np.zeros(len(pool), dtype=bool)
    for ids in fold_ids:
        rows = np.asarray([position[i] for i in ids])
        outside = np.ones(len(pool), dtype=bool)
        outside[rows] = False
        fold_notes = {note_of(pool[i]) for i in rows}
        extras_outside = np.asarray([n not in fold_notes for n in extra_notes], dtype=bool)
        best = np.zeros(len(rows))
        for sims, columns in ((with_pool, outside), (with_extras, extras_outside), (with_shared, None)):
            part = sims[rows] if columns is None else sims[rows][:, columns]
            if part.shape[1]:
                best = np.maximum(best, part.max(axis=1))
        near[rows] = best >= cutoff
    return near


def gold_test_near_copies(task: Any, cutoff: float = CUTOFF) -> dict[str, int]:
    """Held-out gold test sentences (exact repeats already left out) with a near-copy in gold train,
    dev or their whole notes."""
    gold = task.gold()
    whole_seen = trainable_whole_sentences(task.gold_dir, task.taxonomy, gold)
    test = unseen(gold["test"], gold, whole_seen)
    seen = [r.text for r in [*gold["train"], *gold["dev"], *whole_seen]]
    (sims,) = cosines([r.text for r in test], seen)
    near = sims.max(axis=1) >= cutoff if sims.shape[1] else np.zeros(len(test), dtype=bool)
    return {"sentences": len(test), "near_copies": int(near.sum()),
            "labelled_near_copies": int(sum(1 for r, n in zip(test, near, strict=True) if n and r.labels))}  # fmt: skip


def subset_row(mask: np.ndarray, gold_sets: list[list[str]], notes: list[str], hybrid: list[list[list[str]]],
               rule_list: list[list[str]], taxonomy: Any) -> dict[str, Any]:  # fmt: skip
    """The hybrid (one prediction list per seed) and the rule list on the masked sentences, paired."""
    rows = np.flatnonzero(mask)

    def pick(labels: Sequence[Any]) -> list[Any]:
        return [labels[i] for i in rows]

    gold, per_seed, subset_notes, rules = pick(gold_sets), [pick(p) for p in hybrid], pick(notes), pick(rule_list)
    n_notes = len(set(subset_notes))
    row: dict[str, Any] = {"sentences": len(rows), "notes": n_notes, "labelled": sum(1 for g in gold if g)}
    row.update(headline_over_seeds([multilabel_scores(gold, p, taxonomy) for p in per_seed]))
    rule_scores = multilabel_scores(gold, rules, taxonomy)
    row["rule_list"] = {m: rule_scores[m] for m in ("micro_f1", "macro_f1")}
    # A notes-resampled interval needs two notes.
    row["vs_rules"] = paired_ci(gold, subset_notes, per_seed, [rules], taxonomy) if n_notes > 1 else None
    return row


def compare(task: Any, settings: CVSettings, cutoff: float = CUTOFF, *, work_dir: Path | None = None) -> dict[str, Any]:
    """Every mix's hybrid vs the rule list on all pool sentences, those without a near-copy, and the rest."""
    if task.rules is None:
        raise DataError(f"task {task.name} has no rule list (rules.yaml): nothing to compare with")
    cv = task_cross_validation(task, settings, work_dir=work_dir)
    pool = cv.pool
    shared = [r.text for r in cv.part("bronze")] if cv.sources.bronze.exists() else []
    matrices = Pool.of(pool, cv.names, task.rules)
    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    rule_list = task.rules.predict([r.text for r in pool])
    fold_ids: list[list[str]] | None = None
    near = np.zeros(len(pool), dtype=bool)
    mixes = []
    for mix in settings.mixes:
        per_seed = [finished_runs(cv, mix, seed) for seed in settings.seeds]
        if fold_ids is None:  # folds are dealt by note, the same for every mix and seed (``cv.note_folds``)
            fold_ids = [run.ids for run in per_seed[0]]
            near = fold_near_copies(pool, fold_ids, cv.whole_extras, shared, cutoff)
        if any([run.ids for run in runs] != fold_ids for runs in per_seed):
            raise DataError(f"{mix}: its runs hold other folds than the first mix's seed {settings.seeds[0]}; "
                            "rerun them")  # fmt: skip
        hybrid = [fold_labels(fold_views(matrices, runs), rules_or_student, matrices, len(pool)) for runs in per_seed]
        masks = (np.ones(len(pool), dtype=bool), ~near, near)
        mixes.append({"mix": mix, "subsets": {name: subset_row(mask, gold_sets, notes, hybrid, rule_list, task.taxonomy)
                                              for name, mask in zip(SUBSETS, masks, strict=True)}})  # fmt: skip
    return {"task": task.name, "n": len(pool), "notes": len(set(notes)), "folds": settings.folds,
            "seeds": list(settings.seeds), "cutoff": cutoff, "shared": len(shared), "mixes": mixes,
            "gold_test": gold_test_near_copies(task, cutoff)}  # fmt: skip


def render(summary: dict[str, Any], command: str) -> str:
    headers = ["system", "which sentences", "count (notes, labelled)", f"{HYBRID_SUFFIX} micro F1",
               f"{HYBRID_SUFFIX} macro F1", f"{RULE_LIST} micro / macro", "Δ micro vs rule list",
               "Δ macro vs rule list"]  # fmt: skip
    rows = []
    for entry in summary["mixes"]:
        for name, row in entry["subsets"].items():
            ci = row["vs_rules"] or {}
            rows.append([entry["mix"] + HYBRID_SUFFIX, name, f"{row['sentences']} ({row['notes']}, {row['labelled']})",
                         mean_sd_text(row["micro_f1"]), mean_sd_text(row["macro_f1"]),
                         f"{row['rule_list']['micro_f1']:.3f} / {row['rule_list']['macro_f1']:.3f}",
                         interval_text(ci.get("micro_f1")), interval_text(ci.get("macro_f1"))])  # fmt: skip
    test = summary["gold_test"]
    return "\n".join([
        "# Near-copies across folds: is the cross-validated lead over the rule list remembered text?",
        "",
        f"Command: `{command}`. The experiment's finished fold runs ({summary['n']} gold train + dev sentences, "
        f"{summary['notes']} notes, {summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}); "
        "nothing is trained. A held-out sentence is a near-copy when a sentence its fold may train on (the other "
        "folds' gold sentences, the whole-note sentences of their notes, and the task's "
        f"{summary['shared']} bronze sentences) has a character 3-5-gram TF-IDF cosine of at least "
        f"{summary['cutoff']} with it. The hybrid is the one of every report, fitted on each fold's inner dev. "
        "Mean ± sd over seeds; Δ: paired bootstrap 95% interval over notes. How it works: the docstring of "
        "`evals/near_copies.py`.",
        "",
        format_table(headers, rows),
        "",
        f"Gold test: {test['near_copies']} of the {test['sentences']} held-out test sentences the reports score "
        f"({test['labelled_near_copies']} of them labelled) have a near-copy in gold train, dev or their whole "
        "notes (exact repeats are already left out).",
        "",
    ])  # fmt: skip


def write(task: Any, settings: CVSettings, out_dir: Path, command: str, cutoff: float = CUTOFF, *,
          work_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    summary = compare(task, settings, cutoff, work_dir=work_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    path = out_dir / f"{REPORT}.md"
    atomic_write_text(path, render(summary, command))
    return path, summary

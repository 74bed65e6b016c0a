"""What one mix adds over another: both cross-validated on the same folds and seeds (``evals.cv``),
each student and its hybrid with the task's rule list (``MIX+rules``) paired with the other side's.

The topped-up bronze (``evals.topup``) and the gold share (``evals.gold_curve``) each compare one
change of the data; this compares any two mixes, e.g. ``gold+whole-notes+bronze`` against
``gold+bronze``: what the whole training notes add. Intervals are paired bootstraps over notes of
(new - base), seeds averaged inside. Finished runs are reused, so on the experiment's runs nothing
is trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinsynth.evals.core import headline_over_seeds, mean_sd_text, per_category_over_seeds
from clinsynth.evals.cv import HEADLINE, CVSettings, note_of, paired_ci, task_cross_validation
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import HYBRID_SUFFIX
from clinsynth.model.metrics import multilabel_scores
from clinsynth.report import format_table

REPORT = "compare"


def compare_mixes(task: Any, settings: CVSettings, new: str, base: str, out_dir: Path, command: str, *,
                  work_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Cross-validate ``new`` and ``base`` (students and hybrids); write ``compare.{md,json}``."""
    cv = task_cross_validation(task, settings, work_dir=work_dir)
    pool = cv.pool
    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    names = list(task.taxonomy.names)
    predictions: dict[str, list[list[list[str]]]] = {}
    n_train: dict[str, int] = {}
    for mix in (new, base):
        for seed in settings.seeds:
            print(f"{mix} seed {seed}", flush=True)
            found, runs = cv.systems_out_of_fold(mix, seed)
            for system, predicted in found.items():
                predictions.setdefault(system, []).append(predicted)
            n_train[mix] = round(sum(r.n_train for r in runs) / len(runs))
    pairs = [(new, base)]
    if new + HYBRID_SUFFIX in predictions:
        pairs.append((new + HYBRID_SUFFIX, base + HYBRID_SUFFIX))
    rows = []
    for system_new, system_base in pairs:
        scores = {s: [multilabel_scores(gold_sets, p, task.taxonomy) for p in predictions[s]]
                  for s in (system_new, system_base)}  # fmt: skip
        rows.append({
            "new": system_new, "base": system_base,
            "headline": {s: headline_over_seeds(scores[s]) for s in scores},
            "per_category": {s: per_category_over_seeds(scores[s], names) for s in scores},
            "new_vs_base": paired_ci(gold_sets, notes, predictions[system_new], predictions[system_base],
                                     task.taxonomy),
        })  # fmt: skip
    summary = {"new": new, "base": base, "n": len(pool), "notes": len(set(notes)), "folds": settings.folds,
               "seeds": list(settings.seeds), "train_sentences": n_train, "pairs": rows}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    md = out_dir / f"{REPORT}.md"
    atomic_write_text(md, render(summary, names, command))
    return md, summary


def render(summary: dict[str, Any], names: list[str], command: str) -> str:
    lines = [
        f"# What `{summary['new']}` adds over `{summary['base']}`",
        "",
        f"Command: `{command}`",
        "",
        f"Cross-validation over {summary['n']} gold train + dev sentences ({summary['notes']} notes), "
        f"{summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}; the same folds, seeds and "
        f"evaluated sentences on both sides. Training sentences a fold run, mean: "
        + ", ".join(f"`{m}` {n}" for m, n in summary["train_sentences"].items())
        + ". Each system's scores are mean ± sd over seeds; the Δ row is the paired bootstrap 95% interval over "
        "notes of (new - base). `+rules`: the student stacked with the task's rule list, as in the task's report.",
        "",
    ]
    for pair in summary["pairs"]:
        rows = [[s, *(mean_sd_text(pair["headline"][s][m]) for m in HEADLINE)] for s in (pair["new"], pair["base"])]
        rows.append(["new - base", *(interval_text(pair["new_vs_base"][m]) for m in HEADLINE)])
        lines += [format_table(["system", "micro F1", "macro F1", "binary F1"], rows), ""]
    lines += ["## Per category (out-of-fold F1, mean ± sd over seeds)", ""]
    systems = [s for pair in summary["pairs"] for s in (pair["new"], pair["base"])]
    per_category = {s: pair["per_category"][s] for pair in summary["pairs"] for s in (pair["new"], pair["base"])}
    rows = [[c, *(mean_sd_text(per_category[s][c]) for s in systems)] for c in names]
    lines += [format_table(["category", *systems], rows), ""]
    return "\n".join(lines)

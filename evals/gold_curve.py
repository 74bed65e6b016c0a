"""What more gold buys: the experiment's mixes cross-validated with a share of each fold's gold
training notes and with all of them, paired on the same folds, seeds and evaluation sentences.

Annotating gold is the costly step; before asking for more, a user wants to know how the
student, and the hybrid with the rule list, grow with it. Each fold keeps ``share`` of its gold
training notes (``evals.cv.share_of_notes``: one fixed shuffle per fold, whole notes); the inner
dev, the evaluated fold and the LLM data are the same on both sides, so the difference is the
gold alone. Intervals are paired bootstraps over notes of (all - share), seeds averaged inside.
Going from the share to all of it is one step of the curve: doubling with ``--share 0.5``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from clinsynth.evals.core import headline_over_seeds, mean_sd_text
from clinsynth.evals.cv import CVSettings, note_of, paired_ci, task_cross_validation
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import HYBRID_SUFFIX
from clinsynth.model.metrics import multilabel_scores
from clinsynth.report import format_table

REPORT = "gold_curve"
DEFAULT_SHARE = 0.5


def compare_shares(task: Any, settings: CVSettings, share: float, out_dir: Path, command: str, *,
                   work_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Every mix of ``settings`` at ``share`` of the gold training notes and at all of them; writes
    ``gold_curve.{md,json}``."""
    sides = {side: dataclasses.replace(settings, gold_share=value) for side, value in (("share", share), ("all", 1.0))}
    experiments = {side: task_cross_validation(task, side_settings, work_dir=work_dir)
                   for side, side_settings in sides.items()}  # fmt: skip
    pool = experiments["all"].pool  # the same pool on both sides: the share thins training parts only
    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    predictions: dict[str, dict[str, list[list[list[str]]]]] = {side: {} for side in sides}
    n_train: dict[str, dict[str, int]] = {side: {} for side in sides}
    for side, side_settings in sides.items():
        cv = experiments[side]
        for mix in settings.mixes:
            for seed in settings.seeds:
                print(f"gold {side_settings.gold_share:.0%}: {mix} seed {seed}", flush=True)
                found, runs = cv.systems_out_of_fold(mix, seed)
                for system, predicted in found.items():
                    predictions[side].setdefault(system, []).append(predicted)
                n_train[side][mix] = round(sum(r.n_train for r in runs) / len(runs))
    systems = []
    for system in predictions["all"]:
        scores = {side: [multilabel_scores(gold_sets, p, task.taxonomy) for p in predictions[side][system]]
                  for side in sides}  # fmt: skip
        mix = system.removesuffix(HYBRID_SUFFIX)
        systems.append({
            "system": system,
            "train_sentences": {side: n_train[side][mix] for side in sides},
            "headline": {side: headline_over_seeds(scores[side]) for side in sides},
            "all_vs_share": paired_ci(gold_sets, notes, predictions["all"][system], predictions["share"][system],
                                      task.taxonomy),
        })  # fmt: skip
    summary = {"share": share, "n": len(pool), "notes": len(set(notes)), "folds": settings.folds,
               "seeds": list(settings.seeds), "systems": systems}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    md = out_dir / f"{REPORT}.md"
    atomic_write_text(md, render(summary, command))
    return md, summary


def render(summary: dict[str, Any], command: str) -> str:
    share = f"{summary['share']:.0%}"
    headers = ["system", f"train sentences ({share} / all)", f"micro F1 ({share})", "micro F1 (all)",
               f"macro F1 ({share})", "macro F1 (all)", "Δ micro (all - share)", "Δ macro (all - share)"]  # fmt: skip
    rows = [[r["system"], f"{r['train_sentences']['share']} / {r['train_sentences']['all']}",
             mean_sd_text(r["headline"]["share"]["micro_f1"]), mean_sd_text(r["headline"]["all"]["micro_f1"]),
             mean_sd_text(r["headline"]["share"]["macro_f1"]), mean_sd_text(r["headline"]["all"]["macro_f1"]),
             interval_text(r["all_vs_share"]["micro_f1"]), interval_text(r["all_vs_share"]["macro_f1"])]
            for r in summary["systems"]]  # fmt: skip
    lines = [
        f"# What more gold buys (gold learning curve, {share} -> all)",
        "",
        f"Command: `{command}`",
        "",
        f"Cross-validation over {summary['n']} gold train + dev sentences ({summary['notes']} notes), "
        f"{summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}. Each fold trains on "
        f"{share} of its gold training notes (one fixed shuffle per fold) and on all of them; the inner dev, the "
        "evaluated fold and any LLM data are the same on both sides. Mean ± sd over seeds; Δ: paired bootstrap "
        "95% interval over notes of (all - share). `MIX+rules`: the same students stacked with the task's rule list.",
        "",
        format_table(headers, rows),
        "",
    ]
    return "\n".join(lines)

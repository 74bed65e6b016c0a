"""What a bronze top-up added: the same mix cross-validated with the task's bronze and with a
topped-up bronze file (``programs.generate --top-up``), paired on the same folds and seeds.

Both sides use the CV design of ``evals.cv`` (folds by note over gold train + dev, LLM data on
the training side only, finished runs reused), so the difference is the top-up alone. The
interval is a paired bootstrap over notes of (topped-up - base), seeds averaged inside. Per
category: the bronze sentences written for it (generation target) on each side and the
out-of-fold F1, so the targeted categories can be read beside the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinsynth.evals.core import headline_over_seeds, mean_sd_text, per_category_over_seeds
from clinsynth.evals.cv import HEADLINE, CVSettings, note_of, paired_ci, task_cross_validation
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import HYBRID_SUFFIX, MixSources, bronze_target, parse_mix
from clinsynth.errors import ClinsynthError
from clinsynth.model.metrics import multilabel_scores
from clinsynth.report import format_table

REPORT = "topup"
MIX = "gold+bronze"


def compare_bronze(task: Any, settings: CVSettings, topped_up: Path, out_dir: Path, command: str, *,
                   work_dir: Path | None = None, mix: str = MIX) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Cross-validate ``mix`` (a mix with a bronze part) with the task's bronze and with ``topped_up``
    (a top-up, or any other version of the set, e.g. one cleaned of label issues); write
    ``topup.{md,json}``."""
    if not any(part.startswith("bronze") for part in parse_mix(mix)):  # bronze, bronze:N, bronze-unfiltered
        raise ClinsynthError(f"mix {mix!r} reads no bronze: both sides would be the same runs")
    sides = {"base": MixSources.for_task(task), "topped-up": MixSources.for_task(task, bronze=topped_up)}
    experiments = {side: task_cross_validation(task, settings, sources=sources, work_dir=work_dir)
                   for side, sources in sides.items()}  # fmt: skip
    pool = experiments["base"].pool  # the same pool on both sides: only the bronze part differs
    names = list(task.taxonomy.names)
    gold_sets = [list(r.labels) for r in pool]
    predictions: dict[str, list[list[list[str]]]] = {}
    hybrids: dict[str, list[list[list[str]]]] = {}  # mix+rules: the system a user gets when CV picks it
    counts: dict[str, dict[str, int]] = {}
    for side, sources in sides.items():
        cv = experiments[side]
        bronze = cv.part("bronze")
        # Counted by generation target: a top-up raises these; labels can hold more categories.
        counts[side] = {n: sum(bronze_target(r) == n for r in bronze) for n in names}
        counts[side]["all"] = len(bronze)
        for seed in settings.seeds:
            print(f"{side} bronze ({sources.bronze}): {mix} seed {seed}", flush=True)
            found, _ = cv.systems_out_of_fold(mix, seed)
            predictions.setdefault(side, []).append(found[mix])
            if mix + HYBRID_SUFFIX in found:
                hybrids.setdefault(side, []).append(found[mix + HYBRID_SUFFIX])
    notes = [note_of(r) for r in pool]

    def scored(per_side: dict[str, list[list[list[str]]]]) -> dict[str, list[dict[str, Any]]]:
        return {side: [multilabel_scores(gold_sets, p, task.taxonomy) for p in runs] for side, runs in
                per_side.items()}  # fmt: skip

    def headline(scores: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, tuple[float, float]]]:
        return {side: headline_over_seeds(runs) for side, runs in scores.items()}

    def vs_base(per_side: dict[str, list[list[list[str]]]]) -> dict[str, dict[str, float]]:
        return paired_ci(gold_sets, notes, per_side["topped-up"], per_side["base"], task.taxonomy)

    scores = scored(predictions)
    summary: dict[str, Any] = {
        "mix": mix,
        "bronze": {side: task.relative(src.bronze) for side, src in sides.items()},
        "n": len(pool),
        "folds": settings.folds,
        "seeds": list(settings.seeds),
        "bronze_counts": counts,
        "headline": headline(scores),
        "per_category": {side: per_category_over_seeds(runs, names) for side, runs in scores.items()},
        "vs_base": vs_base(predictions),
        "targeted": [c for c in names if counts["topped-up"][c] > counts["base"][c]],
    }
    if hybrids:
        summary["hybrid"] = {"headline": headline(scored(hybrids)), "vs_base": vs_base(hybrids)}
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    md = out_dir / f"{REPORT}.md"
    atomic_write_text(md, render(summary, names, command))
    return md, summary


def _hybrid_lines(summary: dict[str, Any]) -> list[str]:
    """The same comparison for ``mix+rules``: each side's students stacked with the task's rule list."""
    hybrid = summary.get("hybrid")
    if not hybrid:
        return []
    rows = [[side, *(mean_sd_text(hybrid["headline"][side][m]) for m in HEADLINE)] for side in hybrid["headline"]]
    rows.append(["topped-up - base", *(interval_text(hybrid["vs_base"][m]) for m in HEADLINE)])
    return [f"With the rule list (`{summary['mix']}+rules`, the hybrid of the task's report; same runs):", "",
            format_table(["bronze", "micro F1", "macro F1", "binary F1"], rows), ""]  # fmt: skip


def render(summary: dict[str, Any], names: list[str], command: str) -> str:
    headline, per_category, counts = summary["headline"], summary["per_category"], summary["bronze_counts"]
    rows = [[side, counts[side]["all"], *(mean_sd_text(headline[side][m]) for m in HEADLINE)] for side in headline]
    rows.append(["topped-up - base", counts["topped-up"]["all"] - counts["base"]["all"],
                 *(interval_text(summary["vs_base"][m]) for m in HEADLINE)])  # fmt: skip
    targeted = summary["targeted"]
    delta = {c: per_category["topped-up"][c][0] - per_category["base"][c][0] for c in names}
    category_rows = [
        [c + (" (targeted)" if c in targeted else ""), counts["base"][c], counts["topped-up"][c],
         mean_sd_text(per_category["base"][c]), mean_sd_text(per_category["topped-up"][c]), f"{delta[c]:+.3f}"]
        for c in names
    ]  # fmt: skip
    gain = [delta[c] for c in targeted]
    others = [delta[c] for c in names if c not in targeted]
    lines = [
        f"# What the bronze top-up added ({summary['mix']})",
        "",
        f"Command: `{command}`",
        "",
        f"Cross-validation over {summary['n']} gold train + dev sentences, {summary['folds']} folds by note, seeds "
        f"{', '.join(map(str, summary['seeds']))}; the same folds and seeds on both sides. Base bronze: "
        f"`{summary['bronze']['base']}`; topped-up: `{summary['bronze']['topped-up']}`. The last row is the paired "
        "bootstrap 95% interval over notes of (topped-up - base).",
        "",
        format_table(["bronze", "sentences", "micro F1", "macro F1", "binary F1"], rows),
        "",
        *_hybrid_lines(summary),
        "## Per category (out-of-fold F1, mean ± sd over seeds)",
        "",
        format_table(["category", "bronze written for it: base", "topped-up", "F1 base", "F1 topped-up", "Δ"],
                     category_rows),
        "",
    ]
    if targeted:
        lines.append(f"Targeted categories: mean Δ F1 {sum(gain) / len(gain):+.3f}; the others "
                     f"{(sum(others) / len(others)) if others else 0.0:+.3f}.")  # fmt: skip
    return "\n".join(lines) + "\n"

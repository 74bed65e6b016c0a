"""The augmentation report on the cross-validation design: ``augmentation.{md,html,json}`` and plots.

Reads a summary of ``evals.cv.run`` (every mix and baseline with mean, spread over seeds and
a paired CI against gold), adds the bronze learning curve when ``bronze:N`` mixes ran, and
ends with gold test, untouched by every choice above: the default model (trained on the mix
CV chose) beside the keyword lexicon and TF-IDF. "What the numbers say" is computed from
the intervals, never written by hand.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.core import HEADLINE, mean_sd_text
from clinsynth.evals.detectable import needed_words

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.mixes import best_mix, bronze_cap, split_hybrid
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.report import format_table, html_table

REPORT = "augmentation"
CATEGORY_PNG = "augmentation_per_category.png"
CURVE_PNG = "augmentation_learning_curve.png"
RARE_SHARE = 0.05  # a category under 5% of the pooled sentences is rare
HEADERS = ["system", "micro F1", "macro F1", "binary F1", "compared with", "Δ micro", "Δ macro",
           "Δ micro vs rule list", "Δ macro vs rule list", "train sentences", "s per run"]  # fmt: skip


def verdict(ci: dict[str, float]) -> str:
    return "better" if ci["low"] > 0 else "worse" if ci["high"] < 0 else "not significant"


def interval_text(ci: dict[str, float] | None) -> str:
    """A paired difference with its 95% interval, marked when the interval excludes 0."""
    if not ci:
        return "-"
    mark = f" ({verdict(ci)})" if verdict(ci) != "not significant" else ""
    return f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}]{mark}"


def ci_text(row: dict[str, Any], metric: str, against: str = "vs_gold") -> str:
    """A system's difference to its reference, or to what ``against`` names (``interval_text``)."""
    return interval_text(row.get(against, {}).get(metric))


def _ci_words(ci: dict[str, float]) -> str:
    return f"{ci['diff']:+.3f} [{ci['low']:+.3f}, {ci['high']:+.3f}] ({verdict(ci)})"


def comparison(row: dict[str, Any], against: str, other: str) -> str:
    """ "`A` vs `B`: micro F1 ... , macro F1 ..." from a row's paired CIs ``row[against]``."""
    micro, macro = row[against]["micro_f1"], row[against]["macro_f1"]
    return f"`{row['system']}` vs {other}: micro F1 {_ci_words(micro)}, macro F1 {_ci_words(macro)}."


def vs_rules_table(systems: list[dict[str, Any]]) -> str:
    """Each system's headline F1 (mean ± sd) and its paired CIs against the rule list (``vs_rules``)."""
    rows = [[r["system"], *(mean_sd_text(r[m]) for m in HEADLINE),
             *(interval_text(r.get("vs_rules", {}).get(m)) for m in ("micro_f1", "macro_f1"))] for r in systems]
    headers = ["system", "micro F1", "macro F1", "binary F1", "Δ micro vs rule list", "Δ macro vs rule list"]
    return format_table(headers, rows)


def headline_rows(summary: dict[str, Any]) -> list[list[Any]]:
    return [
        [r["system"], mean_sd_text(r["micro_f1"]), mean_sd_text(r["macro_f1"]), mean_sd_text(r["binary_f1"]),
         r.get("reference", "-"),
         ci_text(r, "micro_f1"), ci_text(r, "macro_f1"), ci_text(r, "micro_f1", "vs_rules"),
         ci_text(r, "macro_f1", "vs_rules"), r.get("n_train", "-"),
         f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-"]
        for r in summary["systems"]
    ]  # fmt: skip


def category_rows(summary: dict[str, Any], taxonomy: Taxonomy) -> tuple[list[str], list[list[Any]]]:
    systems = summary["systems"]
    rare = set(rare_categories(summary))
    headers = ["category", "support", *[r["system"] for r in systems]]
    rows = [
        [c + (" *" if c in rare else ""), summary["support"][c], *[f"{r['per_category'][c][0]:.3f}" for r in systems]]
        for c in taxonomy.names
    ]
    return headers, rows


def rare_categories(summary: dict[str, Any]) -> list[str]:
    return [c for c, n in summary["support"].items() if n < RARE_SHARE * summary["n"]]


def curve_points(summary: dict[str, Any]) -> list[tuple[int | None, dict[str, Any]]]:
    """(bronze sentences per category, system) for gold, each ``gold+bronze:N`` and ``gold+bronze``;
    empty when no capped mix ran. ``None`` stands for the whole bronze set."""
    by_name = {r["system"]: r for r in summary["systems"] if r["kind"] == "mix"}
    capped: list[tuple[int | None, dict[str, Any]]] = []
    for name, row in by_name.items():
        parts = name.split("+")
        if "@" not in name and len(parts) == 2 and parts[0] == "gold" and (n := bronze_cap(parts[1])):
            capped.append((n, row))
    capped.sort(key=lambda point: point[0] or 0)
    if not capped or "gold" not in by_name:
        return []
    points: list[tuple[int | None, dict[str, Any]]] = [(0, by_name["gold"]), *capped]
    if "gold+bronze" in by_name:
        points.append((None, by_name["gold+bronze"]))
    return points


def curve_rows(summary: dict[str, Any]) -> list[list[Any]]:
    full = summary.get("bronze_per_target")
    return [
        [n if n is not None else f"all ({full} a category)" if full else "all", row["system"],
         mean_sd_text(row["micro_f1"]), mean_sd_text(row["macro_f1"]), ci_text(row, "micro_f1"),
         ci_text(row, "macro_f1")]
        for n, row in curve_points(summary)
    ]  # fmt: skip


def findings(summary: dict[str, Any]) -> list[str]:
    """Plain statements computed from the numbers and their intervals."""
    systems = {r["system"]: r for r in summary["systems"]}
    gold = systems.get("gold")
    out: list[str] = []
    if not gold:
        return out
    mixes = [r for r in summary["systems"] if r["kind"] == "mix" and r["system"] != "gold" and "vs_gold" in r]
    for row in mixes:
        if row.get("reference") == "gold":
            out.append(comparison(row, "vs_gold", "`gold`"))
    out += hybrid_findings(summary)
    worse = [r["system"] for r in mixes if r.get("reference") == "gold" and
             any(verdict(r["vs_gold"][m]) == "worse" for m in ("micro_f1", "macro_f1"))]  # fmt: skip
    out.append(
        "No mix with LLM data is significantly worse than gold."
        if not worse
        else f"Significantly worse than gold on micro or macro F1: {', '.join(f'`{w}`' for w in worse)}."
    )
    chosen = best_mix(summary)
    if chosen:
        basis = " on the enriched pool and on whole notes, averaged" if summary.get("whole_view") else ""
        out.append(f"Cross-validation chooses `{chosen}` (best mean of micro and macro F1{basis}): the default "
                   "model's mix.")  # fmt: skip
        whole = {r["system"]: r for r in (summary.get("whole_view") or {}).get("systems", [])}
        if "vs_rules" in whole.get(chosen, {}):
            out.append(f"On whole notes (out of fold), {comparison(whole[chosen], 'vs_rules', 'the rule list')}")
    rare = rare_categories(summary)
    if chosen and chosen != "gold" and rare:
        gains = {c: systems[chosen]["per_category"][c][0] - gold["per_category"][c][0] for c in summary["support"]}
        rare_gain = float(np.mean([gains[c] for c in rare]))
        common_gain = float(np.mean([g for c, g in gains.items() if c not in rare]))
        out.append(
            f"`{chosen}` changes per-category F1 by {rare_gain:+.3f} on average over the rare categories "
            f"({', '.join(rare)}; under {RARE_SHARE:.0%} of sentences) and {common_gain:+.3f} over the others."
        )
    if chosen and chosen != "gold" and len(summary["support"]) >= 4:
        # The paper's question: does LLM data help the less frequent categories most?
        by_support = sorted(summary["support"], key=lambda c: summary["support"][c])
        half = len(by_support) // 2
        gain = {c: systems[chosen]["per_category"][c][0] - gold["per_category"][c][0] for c in by_support}
        low, high = by_support[:half], by_support[-half:]
        out.append(
            f"By support: `{chosen}` changes F1 by {np.mean([gain[c] for c in low]):+.3f} on average over the "
            f"{half} least frequent categories ({', '.join(low)}) and {np.mean([gain[c] for c in high]):+.3f} over "
            f"the {half} most frequent."
        )
    points = curve_points(summary)
    if points:
        steps = ", ".join(f"{n if n is not None else 'all'}: {row['macro_f1'][0]:.3f}" for n, row in points)
        out.append(f"Bronze learning curve, macro F1 by bronze sentences per category: {steps}.")
    baselines = [r for r in summary["systems"] if r["kind"] == "baseline"]
    if baselines and chosen:
        best = max(baselines, key=lambda r: r["micro_f1"][0])
        out.append(
            f"Best baseline: {best['system']}, micro F1 {best['micro_f1'][0]:.3f} against "
            f"{systems[chosen]['micro_f1'][0]:.3f} for `{chosen}`."
        )
    if summary.get("detectable"):
        out.append(needed_words(summary["detectable"], f"the {summary['n']} pooled sentences (out of fold)"))
    return out


def hybrid_findings(summary: dict[str, Any]) -> list[str]:
    """What stacking the students with the rule list did, and where each system stands against the rules."""
    out = []
    for row in summary["systems"]:
        if row["kind"] == "hybrid" and "vs_student" in row:
            student, _ = split_hybrid(row["system"])
            out.append("Stacking with the rule list: " + comparison(row, "vs_student", f"`{student}` alone"))
    for row in summary["systems"]:
        if row["kind"] in ("mix", "hybrid") and "vs_rules" in row:
            beats = all(row["vs_rules"][m]["low"] > 0 for m in ("micro_f1", "macro_f1"))
            out.append(comparison(row, "vs_rules", "the rule list") + (" Beats it on both." if beats else ""))
    for row in (summary.get("test") or {}).get("systems", []):
        for key, other in (("vs_rules", "the rule list"), ("vs_gold", "the gold-only model")):
            if key in row:
                out.append("On gold test, " + comparison(row, key, other))
    return out


WHOLE_NOTES_TITLE = "Whole test notes (every sentence: the distribution a user meets)"
TEST_HEADERS = ["system", "micro F1", "macro F1", "binary F1", "Δ micro vs rule list", "Δ macro vs rule list",
                "Δ micro vs gold-only", "Δ macro vs gold-only"]  # fmt: skip


def test_rows(test: dict[str, Any]) -> list[list[Any]]:
    return [[r["system"], f"{r['micro_f1']:.3f}", f"{r['macro_f1']:.3f}", f"{r['binary_f1']:.3f}",
             ci_text(r, "micro_f1", "vs_rules"), ci_text(r, "macro_f1", "vs_rules"), ci_text(r, "micro_f1"),
             ci_text(r, "macro_f1")]
            for r in test["systems"]]  # fmt: skip


def detectable_sentences(scored: dict[str, Any]) -> list[str]:
    """The sentence on how large a win over the rule list the set can show (none without a rule list)."""
    if "detectable" not in scored:
        return []
    return [needed_words(scored["detectable"], f"these {scored['sentences']} sentences")]


def markdown(summary: dict[str, Any], taxonomy: Taxonomy) -> str:
    budget = summary["budget"]
    lines = [
        "# Augmentation: what LLM data adds to gold (cross-validated)",
        "",
        f"Command: `{summary['command']}`. Gold train + dev pooled ({summary['n']} sentences, {summary['notes']} "
        f"notes), {summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}; out-of-fold "
        "predictions cover every sentence once per seed. Within each fold 20% of the training notes pick the epoch "
        "and the thresholds. LLM data joins the training folds only. Gold test is used once, at the end.",
        f"Recipe: `{budget['recipe']}`, {budget['epochs']} epochs at most. Computed in "
        f"{summary['seconds'] / 60:.0f} min (finished runs are reused).",
        "",
        "## What the numbers say",
        "",
        *[f"- {f}" for f in findings(summary)],
        "",
        "## Every mix and baseline (mean ± sd over seeds; paired 95% bootstrap CI of the difference, notes resampled)",
        "",
        "`MIX+rules` is the hybrid: each fold's `MIX` student with the task's rule list (`rules.yaml`): a rule hit, "
        "or a student score at a threshold tuned on the fold's inner dev (`clinsynth.model.hybrid`); it costs no "
        "training. "
        "A system `mix@field=value` is trained with that budget field changed; it is compared with gold trained the "
        "same way when that ran, else with the same mix at the default budget. Seconds per run are wall time on "
        "this machine, including the per-epoch dev scoring.",
        "",
        format_table(HEADERS, headline_rows(summary)),
        "",
    ]
    whole = summary.get("whole_view")
    if whole:
        lines += [
            "## Whole notes (out of fold)",
            "",
            f"Every sentence of the pool's notes kept whole ({whole['sentences']} sentences, {whole['notes']} notes, "
            f"{whole['none']} of them NONE), not only those picked for annotation, scored by the same fold runs "
            "(`evals.whole_view`): what to expect on a user's notes. The default mix is chosen on both sets.",
            "",
            vs_rules_table(whole["systems"]),
            "",
        ]
    if curve_points(summary):
        lines += [
            "## Bronze learning curve",
            "",
            "`gold+bronze:N` adds at most N bronze sentences per target category (a fixed shuffle, so smaller sets "
            "are inside larger ones); 0 is gold alone.",
            "",
            format_table(
                ["bronze per category", "system", "micro F1", "macro F1", "Δ micro", "Δ macro"], curve_rows(summary)
            ),  # fmt: skip
            "",
            f"![bronze learning curve]({CURVE_PNG})",
            "",
        ]
    lines += [
        "## Per category (F1, mean over seeds; * rare: under 5% of sentences)",
        "",
        format_table(*category_rows(summary, taxonomy)),
        "",
        f"![per-category F1]({CATEGORY_PNG})",
        "",
    ]
    test = summary.get("test")
    if test:
        lines += ["## Gold test (final line; no choice above looked at it)", "", test["note"], "",
                  format_table(TEST_HEADERS, test_rows(test)), ""]  # fmt: skip
        lines += [line for sentence in detectable_sentences(test) for line in (sentence, "")]
        if test.get("whole_notes"):
            whole = test["whole_notes"]
            table = format_table(TEST_HEADERS, test_rows(whole))
            lines += [f"### {WHOLE_NOTES_TITLE}", "", whole["note"], "", table, ""]
            lines += [line for sentence in detectable_sentences(whole) for line in (sentence, "")]
    return "\n".join(lines)


def html_page(summary: dict[str, Any], taxonomy: Taxonomy) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>clinsynth augmentation (CV)</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>Augmentation: what LLM data adds to gold (cross-validated)</h1>",
        f"<p><code>{html.escape(summary['command'])}</code>: {summary['n']} gold sentences, {summary['folds']} folds "
        f"by note, seeds {html.escape(', '.join(map(str, summary['seeds'])))}</p>",
        "<h2>What the numbers say</h2><ul>"
        + "".join(f"<li>{html.escape(f)}</li>" for f in findings(summary))
        + "</ul>",
        "<h2>Every mix and baseline</h2>" + html_table(HEADERS, headline_rows(summary)),
    ]
    if curve_points(summary):
        parts.append(
            "<h2>Bronze learning curve</h2>"
            + html_table(
                ["bronze per category", "system", "micro F1", "macro F1", "Δ micro", "Δ macro"], curve_rows(summary)
            )  # fmt: skip
            + f"<img src='{CURVE_PNG}' alt='bronze learning curve'>"
        )
    parts.append("<h2>Per category</h2>" + html_table(*category_rows(summary, taxonomy)))
    parts.append(f"<img src='{CATEGORY_PNG}' alt='per-category F1'>")
    test = summary.get("test")
    if test:
        parts.append(f"<h2>Gold test (final line)</h2><p>{html.escape(test['note'])}</p>"
                     + html_table(TEST_HEADERS, test_rows(test))
                     + "".join(f"<p>{html.escape(line)}</p>" for line in detectable_sentences(test)))  # fmt: skip
        if test.get("whole_notes"):
            whole = test["whole_notes"]
            parts.append(f"<h3>{WHOLE_NOTES_TITLE}</h3><p>{html.escape(whole['note'])}</p>"
                         + html_table(TEST_HEADERS, test_rows(whole))
                         + "".join(f"<p>{html.escape(line)}</p>" for line in detectable_sentences(whole)))  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)


def plot_categories(summary: dict[str, Any], taxonomy: Taxonomy, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = summary["systems"]
    names = list(taxonomy.names)
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(9, 1.1 * len(names) + 3), 4.8))
    for k, row in enumerate(systems):
        xs = np.arange(len(names)) + k * width
        ax.bar(xs, [row["per_category"][c][0] for c in names], width, yerr=[row["per_category"][c][1] for c in names],
               label=row["system"], capsize=2)  # fmt: skip
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
    ax.set_xticklabels([f"{c}\n(n={summary['support'][c]})" for c in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("F1 (out-of-fold, mean over seeds)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("Per-category F1 in cross-validation")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curve_points(summary)
    full = summary.get("bronze_per_target") or max((n or 0) for n, _ in points) * 2
    xs = [n if n is not None else full for n, _ in points]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for metric, label in (("micro_f1", "micro F1"), ("macro_f1", "macro F1")):
        ys = [row[metric][0] for _, row in points]
        sds = [row[metric][1] for _, row in points]
        ax.errorbar(xs, ys, yerr=sds, marker="o", capsize=3, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(n) if n is not None else f"all\n({full})" for n, _ in points])
    ax.set_xlabel("bronze sentences per category added to gold")
    ax.set_ylabel("F1 (out-of-fold, mean ± sd over seeds)")
    ax.set_title("Bronze learning curve (cross-validation)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(summary: dict[str, Any], taxonomy: Taxonomy, out_dir: Path, command: str) -> Path:
    """``augmentation.{json,md,html}`` and the plots under ``out_dir``; returns the Markdown path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {**summary, "command": command}
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=1) + "\n")
    plot_categories(summary, taxonomy, out_dir / CATEGORY_PNG)
    if curve_points(summary):
        plot_curve(summary, out_dir / CURVE_PNG)
    atomic_write_text(out_dir / f"{REPORT}.html", html_page(summary, taxonomy))
    path = out_dir / f"{REPORT}.md"
    atomic_write_text(path, markdown(summary, taxonomy))
    return path

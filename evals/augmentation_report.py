"""Readable output of the single-split suite (``evals.run split``): markdown, an HTML page and PNG plots.

Its files are ``augmentation_split.*``; ``augmentation.*`` is the cross-validated report
(``evals.cv_report``).
"""

from __future__ import annotations

import html
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinsynth.evals.core import mean_sd_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.report import format_table

REPORT = "augmentation_split"
SUMMARY_PNG = f"{REPORT}_summary.png"
CATEGORY_PNG = f"{REPORT}_per_category.png"


def headline_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["system", "runs", "train sentences", "micro F1", "macro F1", "binary F1", "multi-class macro F1"]
    rows = [
        [
            s["system"],
            s["runs"],
            s["n_train"] or "-",
            mean_sd_text(s["micro_f1"]),
            mean_sd_text(s["macro_f1"]),
            mean_sd_text(s["binary_f1"]),
            mean_sd_text(s["multiclass_macro_f1"]),
        ]
        for s in summary["systems"]
    ]
    return headers, rows


def category_rows(summary: dict[str, Any], taxonomy: Taxonomy) -> tuple[list[str], list[list[Any]]]:
    minority = set(summary["minority"])
    headers = ["system", *[(f"{n}*" if n in minority else n) for n in taxonomy.names]]
    rows = [[s["system"], *[mean_sd_text(s["per_category"][n]) for n in taxonomy.names]] for s in summary["systems"]]
    support = summary["test_support"]
    rows.append(["(test support)", *[support[n] for n in taxonomy.names]])
    return headers, rows


def threshold_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["system", "micro F1 (tuned)", "micro F1 (0.5)", "macro F1 (tuned)", "macro F1 (0.5)", "dev micro F1"]
    rows = [
        [
            s["system"],
            mean_sd_text(s["micro_f1"]),
            mean_sd_text(s["micro_f1_at_half"]),
            mean_sd_text(s["macro_f1"]),
            mean_sd_text(s["macro_f1_at_half"]),
            mean_sd_text(s["dev_micro_f1"]),
        ]
        for s in summary["systems"]
        if "micro_f1_at_half" in s
    ]
    return headers, rows


def count_rows(summary: dict[str, Any], taxonomy: Taxonomy) -> tuple[list[str], list[list[Any]]]:
    names = [*taxonomy.names, NONE_LABEL]
    counts = summary["analysis"]["train_counts"]
    return ["mix", *names], [[mix, *[c[n] for n in names]] for mix, c in counts.items()]


def shift_rows(summary: dict[str, Any], taxonomy: Taxonomy) -> tuple[list[str], list[list[Any]]]:
    names = [*taxonomy.names, NONE_LABEL]
    shift = summary["analysis"]["shift"]
    return ["source", *names], [[src, *[("-" if d[n] is None else d[n]) for n in names]] for src, d in shift.items()]


def timing_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    n = summary["n_test"]
    rows = []
    for s in summary["systems"]:
        predict = s["predict_seconds"][0]
        rows.append(
            [s["system"], f"{s['train_seconds'][0]:.1f}", f"{predict:.2f}", _rate(n / predict) if predict else "-"]
        )
    return ["system", "train s (mean)", f"predict s ({n} test sentences)", "sentences/s"], rows


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


def findings(summary: dict[str, Any]) -> list[str]:
    """Plain statements computed from the numbers (no hand-written conclusions)."""
    by_name = {s["system"]: s for s in summary["systems"]}
    out = []
    gold = by_name.get("gold")
    if gold:
        for mix in (
            "gold+silver",
            "gold+bronze",
            "gold+silver+bronze",
            "gold+silver-confident",
            "gold+bronze-unfiltered",
        ):
            s = by_name.get(mix)
            if not s:
                continue
            d_micro = s["micro_f1"][0] - gold["micro_f1"][0]
            d_macro = s["macro_f1"][0] - gold["macro_f1"][0]
            spread = max(s["micro_f1"][1], gold["micro_f1"][1])
            verdict = "within the seed spread" if abs(d_micro) <= spread else ("better" if d_micro > 0 else "worse")
            out.append(
                f"`{mix}` vs `gold`: micro F1 {d_micro:+.3f} ({verdict}; spread {spread:.3f}), macro F1 {d_macro:+.3f}."
            )
            minority = summary["minority"]
            if minority:
                gains = {c: s["per_category"][c][0] - gold["per_category"][c][0] for c in minority}
                out.append("  minority categories: " + ", ".join(f"{c} {g:+.3f}" for c, g in gains.items()))
    baselines = [s for s in summary["systems"] if s["kind"] != "mix"]
    if gold and baselines:
        best = max(baselines, key=lambda s: s["micro_f1"][0])
        out.append(
            f"Best baseline: {best['system']} (micro F1 {best['micro_f1'][0]:.3f}) vs SetFit on gold "
            f"{gold['micro_f1'][0]:.3f}."
        )
    noise = summary["analysis"].get("label_noise", {})
    if "silver_labeller_micro_f1" in noise:
        out.append(
            f"Silver label noise: the labeller that made silver scores micro F1 {noise['silver_labeller_micro_f1']} on "
            f"gold test; {noise.get('silver_below_confidence', '?')} of silver is below confidence "
            f"{noise.get('silver_min_confidence', '?')}."
        )
    precision = noise.get("silver_labeller_precision")
    silver_counts = summary["analysis"]["train_counts"].get("silver")
    if precision and silver_counts:
        labels = sum(silver_counts[c] for c in precision)
        wrong = sum(silver_counts[c] * (1 - precision[c]) for c in precision)
        if labels:
            out.append(
                f"Estimated from that precision, about {wrong / labels:.0%} of silver's {labels} category labels are "
                "wrong; adding them teaches the classifier false positives."
            )
    if gold and "micro_f1_at_half" in gold:
        mixes = [s for s in summary["systems"] if "micro_f1_at_half" in s and s["kind"] == "mix"]
        gain = statistics.fmean(s["micro_f1"][0] - s["micro_f1_at_half"][0] for s in mixes)
        out.append(f"Thresholds tuned on gold dev add {gain:+.3f} micro F1 on average over the mixes (vs 0.5).")
    frozen = by_name.get("frozen MiniLM + LR (gold)")
    if gold and frozen:
        delta = gold["micro_f1"][0] - frozen["micro_f1"][0]
        out.append(
            f"The contrastive phase ({summary['budget']['max_steps']} steps) changes gold micro F1 by {delta:+.3f} "
            "against the frozen encoder with the same heads."
        )
    if "bronze_round_trip_agreement" in noise:
        share = noise["bronze_round_trip_agreement"]
        out.append(f"Bronze: the labeller agreed with the generator's target for {share} of round-tripped sentences.")
    return out


def markdown(summary: dict[str, Any], taxonomy: Taxonomy) -> str:
    b = summary["budget"]
    lines = [
        "# Single-split augmentation experiment on gold test: gold vs gold+silver vs gold+bronze",
        "",
        f"Created {summary['created_at']} by `{summary['command']}`.",
        "",
        f"Test: gold test, {summary['n_test']} sentences. Classifier: SetFit (all-MiniLM-L6-v2), "
        f"{b['max_steps']} contrastive steps of {b['batch_size']} pairs, one balanced logistic-regression head per "
        f"category, thresholds tuned on gold dev. Seeds: {summary['seeds']}. Values are mean ± standard deviation "
        "over seeds (baselines without a seed are single runs).",
        "",
        "## Headline",
        "",
        format_table(*headline_rows(summary)),
        "",
        f"![summary]({SUMMARY_PNG})",
        "",
        "## Findings",
        "",
        *[f"- {f}" if not f.startswith("  ") else f"  - {f.strip()}" for f in findings(summary)],
        "",
        "## Per-category F1 on gold test",
        "",
        "`*` marks minority categories (under 5% of gold train). Test support is small for several categories, so "
        "their F1 moves in large steps.",
        "",
        format_table(*category_rows(summary, taxonomy)),
        "",
        f"![per category]({CATEGORY_PNG})",
        "",
        "## Why: the numbers behind the result",
        "",
        "### Training data per category (imbalance)",
        "",
        format_table(*count_rows(summary, taxonomy)),
        "",
        "### Distribution shift: cosine distance of each source's category centroid to gold test's",
        "",
        "Base MiniLM embeddings; 0 = same centroid. Larger for a source means its sentences of that category "
        "read differently from real notes.",
        "",
        format_table(*shift_rows(summary, taxonomy)),
        "",
        "### Thresholds: tuned on gold dev vs a fixed 0.5",
        "",
        format_table(*threshold_rows(summary)),
        "",
        "### Label noise",
        "",
        "```json",
        json.dumps(summary["analysis"].get("label_noise", {}), indent=2),
        "```",
        "",
        "## Time on this machine",
        "",
        format_table(*timing_rows(summary)),
        "",
    ]
    return "\n".join(lines)


def plot(summary: dict[str, Any], taxonomy: Taxonomy, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = summary["systems"]
    metrics = [("micro_f1", "micro F1"), ("macro_f1", "macro F1"), ("binary_f1", "binary F1")]
    fig, ax = plt.subplots(figsize=(max(8, 0.9 * len(systems) + 3), 4.5))
    x = np.arange(len(systems))
    width = 0.8 / len(metrics)
    for k, (key, label) in enumerate(metrics):
        ax.bar(
            x + k * width,
            [s[key][0] for s in systems],
            width,
            yerr=[s[key][1] for s in systems],
            capsize=2,
            label=label,
        )
    ax.set_xticks(x + width)
    ax.set_xticklabels([s["system"] for s in systems], rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score on gold test")
    ax.set_title("Mixes (mean ± sd over seeds) and baselines")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / SUMMARY_PNG, dpi=110)
    plt.close(fig)

    mixes = [s for s in systems if s["kind"] == "mix"]
    names = list(taxonomy.names)
    minority = set(summary["minority"])
    fig, ax = plt.subplots(figsize=(12, 4.8))
    x = np.arange(len(names))
    width = 0.8 / max(1, len(mixes))
    for k, s in enumerate(mixes):
        ax.bar(
            x + k * width,
            [s["per_category"][n][0] for n in names],
            width,
            yerr=[s["per_category"][n][1] for n in names],
            capsize=1.5,
            label=s["system"],
        )
    for j, n in enumerate(names):
        if n in minority:
            ax.axvspan(j - 0.1, j + 0.9, color="0.9", zorder=0)
    ax.set_xticks(x + 0.4 - width / 2)
    support = summary["test_support"]
    ax.set_xticklabels(
        [f"{n}{'*' if n in minority else ''}\n(n={support[n]})" for n in names], rotation=30, ha="right", fontsize=7
    )
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 on gold test")
    ax.set_title("Per-category F1 by training mix (* and shading: minority categories)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out_dir / CATEGORY_PNG, dpi=110)
    plt.close(fig)


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def html_page(summary: dict[str, Any], taxonomy: Taxonomy) -> str:
    sections = [
        ("Headline (gold test)", html_table(*headline_rows(summary)), SUMMARY_PNG),
        ("Per-category F1 (* minority)", html_table(*category_rows(summary, taxonomy)), CATEGORY_PNG),
        ("Training data per category", html_table(*count_rows(summary, taxonomy)), None),
        (
            "Distribution shift (centroid cosine distance to gold test)",
            html_table(*shift_rows(summary, taxonomy)),
            None,
        ),
        ("Thresholds: tuned vs 0.5", html_table(*threshold_rows(summary)), None),
        ("Time on this machine", html_table(*timing_rows(summary)), None),
    ]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>clinsynth augmentation</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;"
        "font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>Single-split augmentation experiment (gold test)</h1>",
        f"<p>{html.escape(summary['created_at'])} &middot; <code>{html.escape(summary['command'])}</code></p>",
        "<h2>Findings</h2><ul>" + "".join(f"<li>{html.escape(f.strip())}</li>" for f in findings(summary)) + "</ul>",
    ]
    for title, table, image in sections:
        parts.append(f"<h2>{html.escape(title)}</h2>{table}")
        if image:
            parts.append(f"<img src='{image}' alt='{html.escape(title)}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_reports(summary: dict[str, Any], taxonomy: Taxonomy, out_dir: Path) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=1) + "\n")
    plot(summary, taxonomy, out_dir)
    atomic_write_text(out_dir / f"{REPORT}.md", markdown(summary, taxonomy))
    atomic_write_text(out_dir / f"{REPORT}.html", html_page(summary, taxonomy))

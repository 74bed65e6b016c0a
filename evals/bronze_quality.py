"""Suite ``bronze-quality``: what the bronze set holds, what the filters removed, how it compares to gold.

Data: a bronze file (with the ``<file>.report.json`` that ``programs.generate`` writes next
to it) and the gold splits. Scorers, per category: generated / kept / dropped by each
filter (per generation target), distinct-1/2, sentence length against gold, embedding
distance to gold (centroid cosine distance; coverage = share of gold sentences with a
bronze sentence of the same category within ``coverage_cosine``), and a fresh leakage
audit and PHI scan of every kept sentence. No LM is called: this suite is cheap to rerun.
Gold never leaves the machine (MiniLM runs locally).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from clinsynth.data import bronze_filters as bf
from clinsynth.data.phi import scan
from clinsynth.data.records import Record, now_iso, read_records
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.data.textstats import distinct_n, tokens
from clinsynth.llm.compiled import project_relative
from clinsynth.report import format_table

DEFAULT_BRONZE = Path("tasks/ad_signs/data/bronze.jsonl")
COVERAGE_COSINE = 0.6


def _groups(records: Sequence[Record], taxonomy: Taxonomy) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {name: [] for name in (*taxonomy.names, NONE_LABEL)}
    for i, r in enumerate(records):
        for label in r.labels or [NONE_LABEL]:
            groups[label].append(i)
    return groups


def _lengths(texts: Sequence[str]) -> list[int]:
    return [len(tokens(t)) for t in texts]


def category_table(
    bronze: Sequence[Record], gold: Sequence[Record], taxonomy: Taxonomy, embed: bf.Embed, coverage_cosine: float
) -> list[dict[str, Any]]:
    b_vec = embed([r.text for r in bronze])
    g_vec = embed([r.text for r in gold])
    b_groups, g_groups = _groups(bronze, taxonomy), _groups(gold, taxonomy)
    rows = []
    for name in (*taxonomy.names, NONE_LABEL):
        bi, gi = b_groups[name], g_groups[name]
        b_texts, g_texts = [bronze[i].text for i in bi], [gold[i].text for i in gi]
        row: dict[str, Any] = {
            "category": name,
            "bronze": len(bi),
            "gold": len(gi),
            "distinct_1": round(distinct_n(b_texts, 1), 3),
            "distinct_2": round(distinct_n(b_texts, 2), 3),
            "gold_distinct_2": round(distinct_n(g_texts, 2), 3),
            "words_mean": round(statistics.fmean(_lengths(b_texts)), 1) if bi else None,
            "gold_words_mean": round(statistics.fmean(_lengths(g_texts)), 1) if gi else None,
            "centroid_distance": None,
            "coverage": None,
        }
        if bi and gi:
            bc, gc = b_vec[bi].mean(axis=0), g_vec[gi].mean(axis=0)
            cosine = float(bc @ gc / (np.linalg.norm(bc) * np.linalg.norm(gc)))
            row["centroid_distance"] = round(1.0 - cosine, 3)
            nearest = (g_vec[gi] @ b_vec[bi].T).max(axis=1)
            row["coverage"] = round(float((nearest >= coverage_cosine).mean()), 3)
        rows.append(row)
    return rows


def leakage_audit(bronze: Sequence[Record], gold: Sequence[Record], embed: bf.Embed) -> dict[str, Any]:
    cands = [bf.Candidate(r.id, r.text, "", tuple(r.labels), "") for r in bronze]
    audit = bf.audit_leakage(cands, [g.text for g in gold], embed)
    leaks = [c for c in cands if audit.is_leak(c.id)]
    pairs = sorted(
        ({"bronze": c.text, "gold": audit.nearest[c.id][1], "cosine": round(audit.nearest[c.id][0], 4)} for c in cands),
        key=lambda p: -p["cosine"],
    )[:10]
    return {
        "cosine_threshold": audit.cosine_threshold,
        "ngram": audit.ngram,
        "leaks": [{"bronze": c.text, "shared": audit.shared.get(c.id), "nearest": audit.nearest[c.id]} for c in leaks],
        "nearest_pairs": pairs,
    }


def run(
    bronze_path: Path,
    taxonomy: Taxonomy,
    out_dir: Path,
    command: str,
    embed: bf.Embed | None = None,
    gold_paths: Sequence[Path] = (),
    coverage_cosine: float = COVERAGE_COSINE,
) -> dict[str, Any]:
    """``gold_paths``: the task's gold splits (distance to gold, leakage)."""
    if embed is None:
        from clinsynth.model.embeddings import encode as embed
    bronze = read_records(bronze_path, taxonomy)
    gold = [r for p in gold_paths for r in read_records(p, taxonomy)]
    report_path = bronze_path.with_name(bronze_path.name + ".report.json")
    generation = json.loads(report_path.read_text(encoding="utf-8")) if report_path.exists() else None
    results = {
        "suite": "bronze-quality",
        "command": command,
        "created_at": now_iso(),
        "bronze": project_relative(bronze_path),  # a report must not carry this machine's layout
        "n_bronze": len(bronze),
        "n_gold": len(gold),
        "lms": sorted({r.provenance.lm for r in bronze if r.provenance}),
        "coverage_cosine": coverage_cosine,
        "categories": category_table(bronze, gold, taxonomy, embed, coverage_cosine),
        "overall": {
            "distinct_1": round(distinct_n([r.text for r in bronze], 1), 3),
            "distinct_2": round(distinct_n([r.text for r in bronze], 2), 3),
            "gold_distinct_2": round(distinct_n([r.text for r in gold], 2), 3),
        },
        "leakage": leakage_audit(bronze, gold, embed),
        "phi": [{"text": r.text, "hits": [h.kind for h in scan(r.text)]} for r in bronze if scan(r.text)],
        "generation": generation,
        "lengths": {"bronze": _lengths([r.text for r in bronze]), "gold": _lengths([r.text for r in gold])},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bronze.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot(results, out_dir / "bronze.png")
    (out_dir / "bronze.md").write_text(markdown(results), encoding="utf-8")
    return results


def filter_rows(generation: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    columns = ["generated", *bf.FILTERS, "relabelled", bf.OVER_QUOTA, "kept"]
    rows = [[t, *(c.get(k, 0) for k in columns)] for t, c in generation["counts"].items()]
    totals = ["total", *(sum(r[i + 1] for r in rows) for i in range(len(columns)))]
    return ["target", *columns], [*rows, totals]


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "# Bronze quality",
        "",
        f"`{results['command']}` ({results['created_at']}): {results['n_bronze']} kept bronze sentences from "
        f"`{results['bronze']}` (LM: {', '.join(results['lms']) or 'n/a'}), compared with {results['n_gold']} gold "
        "sentences (all splits). No LM is called by this suite.",
        "",
        "![filters and lengths](bronze.png)",
        "",
    ]
    gen = results["generation"]
    if gen:
        headers, rows = filter_rows(gen)
        cfg = gen["config"]
        lines += [
            "## Filters (per generation target)",
            "",
            f"Round trip policy `{cfg['round_trip']}`, near-duplicate cosine >= {cfg['near_duplicate']}, leakage: "
            f"cosine >= {cfg['leak_cosine']} or a shared {cfg['leak_ngram']}-gram with gold. "
            f"{gen['rounds']} round(s), {gen['failed_calls']} failed call(s), {gen['seconds']} s.",
            "",
            format_table(headers, rows),
            "",
        ]
    headers = [
        "category",
        "bronze",
        "gold",
        "distinct-1",
        "distinct-2",
        "gold distinct-2",
        "words",
        "gold words",
        "centroid dist.",
        f"coverage@{results['coverage_cosine']}",
    ]
    rows = [
        [
            r["category"],
            r["bronze"],
            r["gold"],
            r["distinct_1"],
            r["distinct_2"],
            r["gold_distinct_2"],
            r["words_mean"],
            r["gold_words_mean"],
            r["centroid_distance"],
            r["coverage"],
        ]
        for r in results["categories"]
    ]
    o = results["overall"]
    lines += [
        "## Per category (kept bronze vs gold)",
        "",
        format_table(headers, rows),
        "",
        f"Overall distinct-1 {o['distinct_1']}, distinct-2 {o['distinct_2']} (gold distinct-2 {o['gold_distinct_2']}; "
        "distinct-n falls as a set grows, so compare sets of similar size). Centroid distance is 1 - cosine between "
        "the category's bronze and gold mean embeddings (MiniLM); coverage is the share of the category's gold "
        f"sentences with a bronze sentence of the same category at cosine >= {results['coverage_cosine']}.",
        "",
    ]
    leak = results["leakage"]
    lines += [
        "## Leakage audit against gold",
        "",
        f"**{len(leak['leaks'])} leak(s)** among kept sentences (cosine >= {leak['cosine_threshold']} or a shared "
        f"{leak['ngram']}-gram with any gold sentence). Nearest pairs:",
        "",
        format_table(
            ["cosine", "bronze", "nearest gold"],
            [[p["cosine"], p["bronze"], p["gold"]] for p in leak["nearest_pairs"]],
        ),
        "",
        "## PHI scan of kept sentences",
        "",
        f"{len(results['phi'])} kept sentence(s) with a PHI-like span.",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    gen = results["generation"]
    if gen:
        targets = list(gen["counts"])
        bottom = np.zeros(len(targets))
        for key in ("kept", *bf.FILTERS, bf.OVER_QUOTA):
            values = np.array([gen["counts"][t].get(key, 0) for t in targets], dtype=float)
            if values.any():
                ax1.bar(targets, values, bottom=bottom, label=key.replace("_", " "))
                bottom += values
        ax1.set_title("Generated sentences per target: kept and dropped by filter")
        ax1.set_ylabel("sentences")
        ax1.tick_params(axis="x", rotation=60)
        ax1.legend(fontsize=8)
    else:
        ax1.axis("off")
    bins = np.arange(0, 61, 3)
    ax2.hist(results["lengths"]["gold"], bins=bins, alpha=0.6, density=True, label="gold")
    ax2.hist(results["lengths"]["bronze"], bins=bins, alpha=0.6, density=True, label="bronze (kept)")
    ax2.set_title("Sentence length (words)")
    ax2.set_xlabel("words")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

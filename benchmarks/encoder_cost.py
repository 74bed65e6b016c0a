"""Benchmark: the bundled all-MiniLM-L6-v2 against a larger encoder (all-mpnet-base-v2) as the classifier's body.

Quality comes from the cross-validated run of both encoders on the same folds and seed
(``--cv-report``, written by ``python -m evals.run cv --mixes ... --out-dir tasks/ad_signs/reports/encoder``);
this script adds what the larger body costs on this machine: its size, and how many sentences
a second it encodes (the body is nearly all of a prediction's time) on N corpus sentences at the
classifier's sequence length. It writes ``tasks/ad_signs/reports/encoder.md``.

    python benchmarks/encoder_cost.py --encoder outputs/encoders/all-mpnet-base-v2 --n 1000
"""

from __future__ import annotations

from clinsynth.env import apply_environment_defaults

apply_environment_defaults()  # a command: the offline environment before the imports below load dspy

import argparse
import json
import os
import platform
import sys
import time
from itertools import islice
from pathlib import Path

from clinsynth.evals.core import mean_sd_text
from clinsynth.evals.cv_report import ci_text

from clinsynth.data.corpus import iter_sentences
from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.task import load_task
from clinsynth.model.classifier import TrainingBudget
from clinsynth.model.embeddings import model_path
from clinsynth.paths import PROJECT_ROOT
from clinsynth.report import format_table


def encode_rate(folder: str, texts: list[str], max_length: int) -> float:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(folder, device="cpu")
    encoder.max_seq_length = max_length
    encoder.encode(texts[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    encoder.encode(texts, batch_size=64)
    return len(texts) / (time.perf_counter() - started)


def folder_mb(folder: str) -> float:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--encoder", required=True, help="the larger encoder's folder (python -m clinsynth.model.encoders)")
    p.add_argument("--n", type=int, default=1000, help="corpus sentences to encode")
    reports = PROJECT_ROOT / "tasks" / "ad_signs" / "reports"
    p.add_argument("--cv-report", type=Path, default=reports / "encoder" / "augmentation.json")
    p.add_argument("--out", type=Path, default=reports / "encoder.md")
    args = p.parse_args(argv)

    texts = [s.text for s in islice(iter_sentences(load_task(None).corpus), args.n)]  # the first N, as the others
    max_length = TrainingBudget().max_length
    encoders = {"all-MiniLM-L6-v2 (bundled)": str(model_path()), "all-mpnet-base-v2": args.encoder}
    cost_rows = []
    for name, folder in encoders.items():
        rate = encode_rate(folder, texts, max_length)
        cost_rows.append([name, f"{folder_mb(folder):.0f}", f"{rate:.0f}"])
        print(f"{name}: {rate:.0f} sentences/s", flush=True)

    command = "python benchmarks/encoder_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# A larger encoder: all-mpnet-base-v2 against the bundled all-MiniLM-L6-v2",
        "",
        f"Command: `{command}`; machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores.",
        "",
        "## Cost",
        "",
        f"Encoding {len(texts)} corpus sentences at the classifier's {max_length} tokens, batch 64, after a warm-up "
        "batch (the body is nearly all of a prediction's time):",
        "",
        format_table(["encoder", "MB on disk", "sentences/s"], cost_rows),
        "",
    ]
    if args.cv_report.exists():
        summary = json.loads(args.cv_report.read_text(encoding="utf-8"))
        rows = [[s["system"], *(mean_sd_text(s[m]) for m in ("micro_f1", "macro_f1", "binary_f1")),
                 s.get("reference", "-"), ci_text(s, "micro_f1"), ci_text(s, "macro_f1"),
                 _seconds(s.get("train_seconds"))]
                for s in summary["systems"] if s["kind"] == "mix"]  # fmt: skip
        lines += [
            "## Quality (cross-validation)",
            "",
            f"`{summary.get('command', 'python -m evals.run cv')}`: {summary['n']} gold train + dev sentences, "
            f"{summary['folds']} folds by note, seeds {', '.join(map(str, summary['seeds']))}; Δ is the paired "
            "bootstrap 95% interval against the reference ([details](encoder/augmentation.md)).",
            "",
            format_table(["system", "micro F1", "macro F1", "binary F1", "reference", "Δ micro", "Δ macro",
                          "s per run"], rows),  # fmt: skip
            "",
        ]
    atomic_write_text(args.out, "\n".join(lines))
    print(f"report: {args.out}")
    return 0


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


if __name__ == "__main__":
    raise SystemExit(main())

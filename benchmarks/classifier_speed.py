"""Benchmark: SetFit classifier vs TF-IDF baseline vs LLM labelling, training and prediction.

Prediction throughput is measured here, on N public-corpus sentences (after one warm-up
batch): the SetFit model (``--model``, default: the main job's model), TF-IDF + logistic
regression trained on gold train, and the keyword lexicon. LLM labelling throughput comes
from the labeller eval on gold test (``tasks/ad_signs/reports/labeler.json``: wall seconds for 216
sentences) and training time per mix from the augmentation experiment
(``tasks/ad_signs/reports/augmentation.json``), both measured on the same machine.

    python benchmarks/classifier_speed.py --n 2000
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
from pathlib import Path

from clinsynth.data.corpus import iter_sentences
from clinsynth.data.records import now_iso
from clinsynth.data.task import load_task
from clinsynth.model.baselines import KeywordLexicon, TfidfLogReg
from clinsynth.model.classifier import SignsClassifier
from clinsynth.model.train import ensure_default_model
from clinsynth.report import format_table, sections

OWN_SECTIONS = ("## Prediction", "## Training time per mix")  # what this script writes in the report


def throughput(fn, texts: list[str], warmup: int = 64) -> float:
    fn(texts[:warmup])
    started = time.perf_counter()
    fn(texts)
    return len(texts) / (time.perf_counter() - started)


def llm_rows(path: Path) -> list[list]:
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for result in data.get("results", []):
        n = len(result.get("predictions", []))
        if n and result.get("seconds"):
            rows.append([f"LLM labeller, {result['solver']} ({data.get('lm')})", f"{n / result['seconds']:.2f}", "-"])
    return rows


def training_rows(path: Path) -> list[list]:
    if not path.exists():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = []
    for s in data["systems"]:
        if s["kind"] == "llm" or "train_seconds" not in s:
            continue
        if isinstance(s["train_seconds"], list):  # single-split report: mean and sd over seeds
            mean, sd = s["train_seconds"]
            seconds = f"{mean:.0f} ± {sd:.0f}" if s["kind"] == "mix" else f"{mean:.1f}"
        else:  # cross-validated report: mean over folds and seeds
            seconds = f"{s['train_seconds']:.0f}"
        rows.append([s["system"], s.get("n_train") or "-", seconds])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="corpus sentences to predict")
    p.add_argument("--model", type=Path, default=None, help="SetFit model directory (default: the main job's)")
    p.add_argument("--task", type=Path, default=None, help="task folder (default: the bundled AD task)")
    p.add_argument("--out", type=Path, default=None, help="report (default: <task reports>/benchmarks.md)")
    args = p.parse_args(argv)

    task = load_task(args.task)
    reports = task.reports_dir
    out = args.out or reports / "benchmarks.md"
    taxonomy = task.taxonomy
    texts = [s.text for _, s in zip(range(args.n), iter_sentences(task.corpus), strict=False)]  # the first N
    model_dir = args.model or ensure_default_model(task)
    setfit = SignsClassifier.load(model_dir, taxonomy)
    gold = task.gold()
    started = time.perf_counter()
    tfidf = TfidfLogReg(taxonomy.names).fit(gold["train"], gold["dev"])
    tfidf_train = time.perf_counter() - started
    lexicon = KeywordLexicon.from_taxonomy(taxonomy)

    predict_rows = [
        [f"SetFit ({model_dir.name}, mix {setfit.info.mix})", f"{throughput(setfit.predict, texts):.0f}", "measured"],
        [f"TF-IDF + LR (trained in {tfidf_train:.1f} s)", f"{throughput(tfidf.predict, texts):.0f}", "measured"],
        ["keyword lexicon", f"{throughput(lexicon.predict, texts):.0f}", "measured"],
        *llm_rows(reports / "labeler.json"),
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    lines = [
        "# Benchmarks: training time and prediction throughput",
        "",
        f"`python benchmarks/classifier_speed.py --n {args.n}` on {machine}, {now_iso()}.",
        "",
        f"## Prediction ({len(texts)} public-corpus sentences, after a warm-up batch)",
        "",
        format_table(["system", "sentences/s", "source"], predict_rows),
        "",
        "LLM rows: wall time of `python -m evals.run labeler` on gold test (one request at a time).",
        "",
        "## Training time per mix (augmentation experiment, mean over folds and seeds)",
        "",
        format_table(["system", "training sentences", "seconds"], training_rows(reports / "augmentation.json"))
        if (reports / "augmentation.json").exists()
        else "(run `python -m evals.run augmentation` first)",
        "",
    ]
    # Sections other benchmarks own in the same file (fast_path.py's) are kept, after these.
    previous = out.read_text(encoding="utf-8") if out.exists() else ""
    kept = [block for heading, block in sections(previous).items() if not heading.startswith(OWN_SECTIONS)]
    out.write_text("\n".join(lines) + "".join("\n" + block.strip("\n") + "\n" for block in kept), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

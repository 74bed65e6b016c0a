"""Suite ``augmentation``: what silver and bronze add to scarce gold, per category.

Task: gold test. Solvers: the SetFit classifier trained on each mix (gold, gold+silver,
gold+bronze, gold+silver+bronze; silver and bronze alone as references; ablations:
confident silver only, bronze without the round-trip filter), several seeds each, with
thresholds tuned on gold dev; baselines on the same test: a keyword lexicon from the
taxonomy, TF-IDF + logistic regression on gold, the frozen MiniLM encoder with heads
on gold (SetFit without its contrastive phase), and the zero-shot and compiled LLM
labellers (their test predictions from ``tasks/ad_signs/reports/labeler.json``). Scorer: per-category
F1, micro/macro F1, binary F1 and multi-class macro F1, mean and spread over seeds.

Each trained run is stored under ``<work-dir>/runs/`` keyed by its mix, seed, budget and
data; a rerun reuses finished runs, so an interrupted experiment resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.core import mean_std, run_key

from clinsynth.data.gold import load_gold
from clinsynth.data.mixes import MixSources, load_part, parse_mix
from clinsynth.data.records import Record, label_counts, now_iso
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.model.classifier import SignsClassifier, TrainingBudget
from clinsynth.model.metrics import label_matrix, multilabel_scores

MAIN_MIXES = ("gold", "gold+silver", "gold+bronze", "gold+silver+bronze")
REFERENCE_MIXES = ("silver", "bronze")
ABLATION_MIXES = ("gold+silver-confident", "gold+bronze-unfiltered")
DEFAULT_MIXES = MAIN_MIXES + REFERENCE_MIXES + ABLATION_MIXES
DEFAULT_SEEDS = (0, 1, 2)
MINORITY_SHARE = 0.05  # a category under 5% of gold train sentences is a minority category
HEADLINE = ("micro_f1", "macro_f1", "binary_f1", "multiclass_macro_f1")


@dataclass
class Experiment:
    mixes: tuple[str, ...] = DEFAULT_MIXES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    sources: MixSources | None = None  # None: the task's (``for_task``)
    work_dir: Path | None = None  # finished runs are kept under work_dir/runs (resume)
    labeler_report: Path | None = None  # tasks/ad_signs/reports/labeler.json of the task, for the LLM rows
    train_limit: int | None = None  # first N sentences of each part of a mix (quick runs)
    baselines: bool = True

    @classmethod
    def for_task(cls, task: Any, **settings: Any) -> Experiment:
        """The experiment on ``task``'s files; ``settings`` are any other fields."""
        experiment = cls(**settings)
        if experiment.sources is None:
            experiment.sources = MixSources.for_task(task)
        if experiment.work_dir is None:
            experiment.work_dir = task.output_dir / "augmentation"
        if experiment.labeler_report is None:
            experiment.labeler_report = task.reports_dir / "labeler.json"
        return experiment


@dataclass
class RunResult:
    system: str
    kind: str  # "mix" | "baseline" | "llm"
    seed: int | None
    test_scores: dict[str, Any]
    test_scores_at_half: dict[str, Any] | None = None
    dev_scores: dict[str, Any] | None = None
    thresholds: dict[str, float] | None = None
    train_counts: dict[str, int] | None = None
    train_seconds: float = 0.0
    predict_seconds: float = 0.0
    n_train: int = 0
    predictions: list[list[str]] = field(default_factory=list)


def _scores(gold: Sequence[Record], predicted: Sequence[Sequence[str]], taxonomy: Taxonomy) -> dict[str, Any]:
    return multilabel_scores([list(r.labels) for r in gold], [list(p) for p in predicted], taxonomy)


def train_mix_run(
    mix: str,
    seed: int,
    train: Sequence[Record],
    dev: Sequence[Record],
    test: Sequence[Record],
    taxonomy: Taxonomy,
    budget: TrainingBudget,
) -> RunResult:
    classifier = SignsClassifier.train(train, taxonomy, dev=dev, budget=budget, seed=seed, mix=mix, show_progress=False)
    started = time.monotonic()
    test_scores = classifier.scores([r.text for r in test])
    predict_seconds = time.monotonic() - started
    predicted = classifier.decide(test_scores)
    names = list(taxonomy.names)
    at_half = [[n for n, s in zip(names, row, strict=True) if s >= 0.5] for row in test_scores]
    dev_predicted = classifier.predict([r.text for r in dev])
    return RunResult(
        system=mix,
        kind="mix",
        seed=seed,
        test_scores=_scores(test, predicted, taxonomy),
        test_scores_at_half=_scores(test, at_half, taxonomy),
        dev_scores=_scores(dev, dev_predicted, taxonomy),
        thresholds=classifier.info.thresholds,
        train_counts=classifier.info.train_counts,
        train_seconds=classifier.info.train_seconds,
        predict_seconds=round(predict_seconds, 2),
        n_train=len(train),
        predictions=predicted,
    )


def baseline_runs(
    train: Sequence[Record], dev: Sequence[Record], test: Sequence[Record], taxonomy: Taxonomy, budget: TrainingBudget
) -> list[RunResult]:
    from clinsynth.model.baselines import KeywordLexicon, TfidfLogReg

    texts = [r.text for r in test]
    out = []
    lexicon = KeywordLexicon.from_taxonomy(taxonomy)
    started = time.monotonic()
    predicted = lexicon.predict(texts)
    out.append(
        RunResult("keyword lexicon", "baseline", None, _scores(test, predicted, taxonomy),
                  predict_seconds=round(time.monotonic() - started, 3), predictions=predicted)
    )  # fmt: skip
    started = time.monotonic()
    tfidf = TfidfLogReg(taxonomy.names).fit(train, dev)
    train_seconds = time.monotonic() - started
    started = time.monotonic()
    predicted = tfidf.predict(texts)
    out.append(
        RunResult("tf-idf + LR (gold)", "baseline", None, _scores(test, predicted, taxonomy),
                  thresholds=tfidf.thresholds, train_seconds=round(train_seconds, 2),
                  predict_seconds=round(time.monotonic() - started, 3), n_train=len(train), predictions=predicted)
    )  # fmt: skip
    frozen = train_mix_run("frozen MiniLM + LR (gold)", 0, train, dev, test, taxonomy, _frozen(budget))
    frozen.kind = "baseline"
    out.append(frozen)
    return out


def _frozen(budget: TrainingBudget) -> TrainingBudget:
    return TrainingBudget(**{**asdict(budget), "recipe": "contrastive", "max_steps": 0})


def llm_runs(report: Path | None, test: Sequence[Record], taxonomy: Taxonomy) -> list[RunResult]:
    """The LLM labellers' predictions on gold test, as stored by ``evals.run labeler``."""
    if report is None or not Path(report).exists():
        return []
    data = json.loads(Path(report).read_text(encoding="utf-8"))
    want = [r.id for r in test]
    out = []
    for result in data.get("results", []):
        by_id = {p["id"]: p.get("predicted") for p in result.get("predictions", [])}
        if sorted(by_id) != sorted(want):
            continue  # another split or a partial run
        predicted = [by_id[i] or [] for i in want]
        out.append(
            RunResult(f"LLM labeller, {result['solver']}", "llm", None, _scores(test, predicted, taxonomy),
                      predict_seconds=round(result.get("seconds", 0.0), 1), predictions=predicted)
        )  # fmt: skip
    return out


def load_mixes(experiment: Experiment, taxonomy: Taxonomy) -> dict[str, list[Record]]:
    """Each mix's training records; with ``train_limit``, the first N of each part."""
    parts: dict[str, list[Record]] = {}
    out = {}
    for mix in experiment.mixes:
        records: list[Record] = []
        for part in parse_mix(mix):
            if part not in parts:
                loaded = load_part(part, taxonomy, experiment.sources)
                parts[part] = loaded[: experiment.train_limit] if experiment.train_limit else loaded
            records.extend(parts[part])
        out[mix] = records
    return out


def run(experiment: Experiment, taxonomy: Taxonomy, out_dir: Path, command: str) -> dict[str, Any]:
    """Train every mix x seed (reusing finished runs), add baselines, write the reports."""
    if experiment.sources is None or experiment.work_dir is None:
        raise ValueError("Experiment needs sources and work_dir: build it with Experiment.for_task(task)")
    gold = load_gold(experiment.sources.gold_dir, taxonomy)
    dev, test = gold["dev"], gold["test"]
    runs_dir = Path(experiment.work_dir) / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    results: list[RunResult] = []
    mix_data = load_mixes(experiment, taxonomy)
    total = len(experiment.mixes) * len(experiment.seeds)
    done = 0
    for mix in experiment.mixes:
        train = mix_data[mix]
        for seed in experiment.seeds:
            done += 1
            key = run_key(mix, seed, experiment.budget.key(), [(r.text, r.labels) for r in train], taxonomy.names)
            path = runs_dir / f"{mix}.seed{seed}.{key}.json"
            if path.exists():
                result = RunResult(**json.loads(path.read_text(encoding="utf-8")))
                print(f"[{done}/{total}] {mix} seed {seed}: reused ({path.name})", flush=True)
            else:
                print(f"[{done}/{total}] {mix} seed {seed}: training on {len(train)} sentences ...", flush=True)
                result = train_mix_run(mix, seed, train, dev, test, taxonomy, experiment.budget)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(asdict(result)), encoding="utf-8")
                tmp.replace(path)
            s = result.test_scores
            print(
                f"    micro F1 {s['micro_f1']:.3f}  macro F1 {s['macro_f1']:.3f}  binary F1 {s['binary_f1']:.3f}"
                f"  ({result.train_seconds:.0f} s training)",
                flush=True,
            )
            results.append(result)
    if experiment.baselines:
        print("baselines: keyword lexicon, TF-IDF + LR, frozen MiniLM + LR, LLM labellers", flush=True)
        results.extend(baseline_runs(gold["train"], dev, test, taxonomy, experiment.budget))
        results.extend(llm_runs(experiment.labeler_report, test, taxonomy))
    summary = summarise(results, taxonomy, gold["train"], test)
    summary["analysis"] = analyse(results, mix_data, taxonomy, test, experiment)
    summary.update(
        {
            "created_at": now_iso(),
            "command": command,
            "budget": asdict(experiment.budget),
            "seeds": list(experiment.seeds),
            "mixes": list(experiment.mixes),
            "train_limit": experiment.train_limit,
            "runs": [{k: v for k, v in asdict(r).items() if k != "predictions"} for r in results],
        }
    )
    from clinsynth.evals.augmentation_report import write_reports

    write_reports(summary, taxonomy, out_dir)
    return summary


# -- aggregation ----------------------------------------------------------------------


def summarise(
    results: Sequence[RunResult], taxonomy: Taxonomy, gold_train: Sequence[Record], test: Sequence[Record]
) -> dict[str, Any]:
    """Mean and spread per system of the headline metrics and per-category F1."""
    systems: dict[str, list[RunResult]] = {}
    for r in results:
        systems.setdefault(r.system, []).append(r)
    train_counts = label_counts(gold_train, taxonomy.names)
    minority = [n for n in taxonomy.names if train_counts[n] < MINORITY_SHARE * len(gold_train)]
    test_support = label_counts(test, taxonomy.names)
    rows = []
    for name, runs in systems.items():
        row: dict[str, Any] = {"system": name, "kind": runs[0].kind, "runs": len(runs)}
        for metric in HEADLINE:
            row[metric] = mean_std([r.test_scores[metric] for r in runs])
        row["per_category"] = {
            c: mean_std([r.test_scores["per_category"][c]["f1"] or 0.0 for r in runs]) for c in taxonomy.names
        }
        halves = [r.test_scores_at_half for r in runs if r.test_scores_at_half]
        if halves:
            row["micro_f1_at_half"] = mean_std([h["micro_f1"] for h in halves])
            row["macro_f1_at_half"] = mean_std([h["macro_f1"] for h in halves])
        devs = [r.dev_scores for r in runs if r.dev_scores]
        if devs:
            row["dev_micro_f1"] = mean_std([d["micro_f1"] for d in devs])
        row["train_seconds"] = mean_std([r.train_seconds for r in runs])
        row["predict_seconds"] = mean_std([r.predict_seconds for r in runs])
        row["n_train"] = runs[0].n_train
        rows.append(row)
    return {
        "n_test": len(test),
        "test_support": test_support,
        "gold_train_counts": train_counts,
        "minority": minority,
        "systems": rows,
    }


# -- why does (or doesn't) augmentation help ------------------------------------------


def analyse(
    results: Sequence[RunResult],
    mix_data: dict[str, list[Record]],
    taxonomy: Taxonomy,
    test: Sequence[Record],
    experiment: Experiment,
) -> dict[str, Any]:
    """Numbers behind the result: training counts, label noise, distribution shift, thresholds."""
    analysis: dict[str, Any] = {
        "train_counts": {mix: label_counts(records, taxonomy.names) for mix, records in mix_data.items()},
    }
    analysis["label_noise"] = label_noise(results, experiment.sources)
    analysis["shift"] = distribution_shift(mix_data, taxonomy, test)
    return analysis


def label_noise(results: Sequence[RunResult], sources: MixSources) -> dict[str, Any]:
    """How trustworthy each source's labels are, from what we can measure without new labels.

    Silver: the compiled LLM labeller's per-category precision on gold test (it made
    silver) and the share of silver below the confidence cut. Bronze: the round-trip
    agreement rate (kept / round-tripped) from the generator's report.
    """
    out: dict[str, Any] = {}
    compiled = next((r for r in results if r.kind == "llm" and r.system.endswith("compiled")), None)
    if compiled:
        out["silver_labeller_precision"] = {
            c: round(v["precision"], 3) for c, v in compiled.test_scores["per_category"].items() if v["f1"] is not None
        }
        out["silver_labeller_micro_f1"] = round(compiled.test_scores["micro_f1"], 3)
    if Path(sources.silver).exists():
        confidences = []
        with Path(sources.silver).open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                confidences.append((row.get("provenance") or {}).get("confidence") or 0.0)
        out["silver_below_confidence"] = round(
            sum(c < sources.silver_min_confidence for c in confidences) / max(1, len(confidences)), 3
        )
        out["silver_min_confidence"] = sources.silver_min_confidence
    report = Path(f"{sources.bronze}.report.json")
    if report.exists():
        counts = json.loads(report.read_text(encoding="utf-8")).get("counts", {})
        agreed = sum(c.get("kept", 0) + c.get("over_quota", 0) for c in counts.values())
        disagreed = sum(c.get("round_trip", 0) for c in counts.values())
        if agreed + disagreed:
            out["bronze_round_trip_agreement"] = round(agreed / (agreed + disagreed), 3)
    return out


def distribution_shift(mix_data: dict[str, list[Record]], taxonomy: Taxonomy, test: Sequence[Record]) -> dict:
    """Cosine distance between each source's per-category centroid and gold test's (base MiniLM)."""
    from clinsynth.model.embeddings import encode_cached

    by_source: dict[str, list[Record]] = {}
    seen: set[tuple[str, str]] = set()
    for records in mix_data.values():
        for r in records:  # a record shared by several mixes counts once
            if (r.source, r.id) not in seen:
                seen.add((r.source, r.id))
                by_source.setdefault(r.source, []).append(r)
    test_vec = encode_cached([r.text for r in test], show_progress=False)
    names = (*taxonomy.names, NONE_LABEL)
    test_centroids = _centroids(test, test_vec, names)
    out: dict[str, dict[str, float | None]] = {}
    for source, records in sorted(by_source.items()):
        vectors = encode_cached([r.text for r in records], show_progress=False)
        centroids = _centroids(records, vectors, names)
        out[source] = {
            n: (
                round(1.0 - float(centroids[n] @ test_centroids[n]), 3)
                if n in centroids and n in test_centroids
                else None
            )
            for n in names
        }
    return out


def _centroids(records: Sequence[Record], vectors: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    matrix = label_matrix([r.labels for r in records], [n for n in names if n != NONE_LABEL])
    out = {}
    for j, name in enumerate(names):
        rows = np.flatnonzero(matrix[:, j])
        if len(rows):
            c = vectors[rows].mean(axis=0)
            out[name] = c / (np.linalg.norm(c) or 1.0)
    return out

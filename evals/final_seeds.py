"""How much the default model's gold test line moves with its training seed.

Cross-validation chooses the default mix on 3 folds x 3 seeds, but a user gets one model,
trained once (seed 0) on all of gold train with its hybrid's threshold fitted on gold dev;
the report's gold-test line is that one training's. This suite trains the same mix with
other seeds, exactly as ``clinsynth run`` trains the default model (``clinsynth.model.train``),
and scores each on gold test and the whole test notes beside the rule list, with the same
leave-out of sentences a model may have trained on (``clinsynth.data.gold.held_out_test_sets``) and paired
bootstrap CIs over notes; the last row pools the seeds (averaged inside each resample).

It measures; it chooses nothing. The default model stays the task's seed-0 model, and no
seed is picked by its test line. Models go under ``outputs/<task>/final-seeds/seed<N>``; a
model already trained the same way (same mix, seed, budget and data hashes: its card) is
reused, the task's default model included, so a rerun trains nothing new.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clinsynth.evals.core import HEADLINE
from clinsynth.evals.cv import RULE_LIST, TEST_TEXT, checked_predict, note_of, paired_ci
from clinsynth.evals.cv_report import interval_text

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.gold import held_out_test_sets
from clinsynth.errors import DataError
from clinsynth.model.classifier import SignsClassifier, TrainingBudget
from clinsynth.model.metrics import multilabel_scores
from clinsynth.model.train import TrainConfig, check_settings, default_config, rechecked, train, trained_as
from clinsynth.report import format_table

REPORT = "final_seeds"
DEFAULT_SEEDS = (0, 1, 2)
SETS = {"test": "gold test", "whole_notes": "whole test notes"}


def model_dir_for(task: Any, config: TrainConfig, models_dir: Path) -> tuple[Path, bool]:
    """Where the seed's model is, and whether a model trained this way is already there: the task's
    default model when it was, else the seed's own folder."""
    if trained_as(task.model_dir, task, config):
        return task.model_dir, True
    own = models_dir / f"seed{config.seed}"
    # The seed's own model is reused where only the LLM check's bar moved (its card is rewritten): the
    # student is the same. The task's default model is left as the pipeline trained it.
    return own, rechecked(own, task, config) is not None


def measure(task: Any, seeds: Sequence[int], models_dir: Path, budget: TrainingBudget | None = None,
            handle: Any = None) -> dict[str, Any]:  # fmt: skip
    """Train (or reuse) the default mix with each seed; score each and all on gold test and whole test notes.
    A default model with the LLM check (``default_config``) is scored with it (``handle``: that LM, e.g. in tests)."""
    if task.rules is None:
        raise DataError(f"task {task.name} has no rule list (rules.yaml) to compare with", path=task.config_path)
    default = default_config(task)
    mix = default.mix
    gold = task.gold()
    held_out = held_out_test_sets(task.gold_dir, task.taxonomy, gold)
    sets = {name: records for name, records in held_out.items() if records}
    truth = {name: [list(r.labels) for r in records] for name, records in sets.items()}
    notes = {name: [note_of(r) for r in records] for name, records in sets.items()}
    rules = {name: task.rules.predict([r.text for r in records]) for name, records in sets.items()}
    predicted: dict[str, list[list[list[str]]]] = {name: [] for name in sets}
    rows = []
    for seed in seeds:
        config = TrainConfig(mix=mix, seed=seed, budget=budget or TrainingBudget(), llm_check=default.llm_check)
        model_dir, reused = model_dir_for(task, config, models_dir)
        if not reused:
            print(f"seed {seed}: training {mix} into {model_dir}", flush=True)
            train(task, config, out=model_dir)
        model = SignsClassifier.load(model_dir, task.taxonomy)
        predict = checked_predict(task, model_dir, model, TEST_TEXT, handle)
        row: dict[str, Any] = {"seed": seed, "model": task.relative(model_dir), "reused": reused,
                               "threshold": model.info.hybrid.get("threshold")}  # fmt: skip
        for name, records in sets.items():
            labels = predict([r.text for r in records])
            predicted[name].append(labels)
            row[name] = _scored(truth[name], notes[name], [labels], rules[name], task.taxonomy)
        rows.append(row)
        print(f"seed {seed}: gold test micro / macro F1 {row['test']['micro_f1']:.3f} / "
              f"{row['test']['macro_f1']:.3f}", flush=True)  # fmt: skip
    pooled = {name: _scored(truth[name], notes[name], predicted[name], rules[name], task.taxonomy) for name in sets}
    rule_list = {name: {m: multilabel_scores(truth[name], rules[name], task.taxonomy)[m] for m in HEADLINE}
                 for name in sets}  # fmt: skip
    below = check_settings(task, default).get("below")
    return {"task": task.name, "mix": mix, "llm_check": default.llm_check, "llm_check_below": below,
            "seeds": list(seeds), "rows": rows,
            "pooled": pooled,
            "rule_list": rule_list, "sentences": {name: len(records) for name, records in sets.items()},
            "notes": {name: len(set(n)) for name, n in notes.items()}}  # fmt: skip


def _scored(truth: list[list[str]], notes: list[str], per_seed: list[list[list[str]]], rules: list[list[str]],
            taxonomy: Any) -> dict[str, Any]:  # fmt: skip
    scores = [multilabel_scores(truth, labels, taxonomy) for labels in per_seed]
    out: dict[str, Any] = {m: statistics.fmean(s[m] for s in scores) for m in HEADLINE}
    if len(scores) > 1:
        out["sd"] = {m: statistics.stdev(s[m] for s in scores) for m in HEADLINE}
    out["vs_rules"] = paired_ci(truth, notes, per_seed, [rules], taxonomy)
    return out


def check_words(summary: dict[str, Any]) -> str:
    """How the seeds' models ask the LLM, as the default model does."""
    if not summary.get("llm_check"):
        return ""
    below = summary.get("llm_check_below")
    return " with its LLM check on the additions" + ("" if below is None else f" the student scored under {below}")


def render(summary: dict[str, Any], command: str) -> str:
    headers = ["seed", "model", "hybrid threshold (gold dev)"]
    for name, words in SETS.items():
        if name in summary["sentences"]:
            headers += [f"{words}: micro / macro F1", *(f"{words}: Δ {m} vs rule list" for m in ("micro", "macro"))]

    def cells(result: dict[str, Any]) -> list[str]:
        sd = result.get("sd")
        level = (f"{result['micro_f1']:.3f} ± {sd['micro_f1']:.3f} / {result['macro_f1']:.3f} ± {sd['macro_f1']:.3f}"
                 if sd else f"{result['micro_f1']:.3f} / {result['macro_f1']:.3f}")  # fmt: skip
        return [level, *(interval_text(result["vs_rules"][m]) for m in ("micro_f1", "macro_f1"))]

    rows = []
    for row in summary["rows"]:
        model = row["model"] + (" (reused)" if row["reused"] else "")
        rows.append([str(row["seed"]), model, f"{row['threshold']}",
                     *(c for name in SETS if name in row for c in cells(row[name]))])  # fmt: skip
    pooled = summary["pooled"]
    rows.append(["all", "mean ± sd; Δ with the seeds averaged inside", "-",
                 *(c for name in SETS if name in pooled for c in cells(pooled[name]))])  # fmt: skip
    rules = summary["rule_list"]
    rows.append(["-", RULE_LIST, "-", *(c for name in SETS if name in rules
                                          for c in (f"{rules[name]['micro_f1']:.3f} / {rules[name]['macro_f1']:.3f}",
                                                    "-", "-"))])  # fmt: skip
    sizes = "; ".join(f"{SETS[name]} {n} sentences ({summary['notes'][name]} notes)"
                      for name, n in summary["sentences"].items())  # fmt: skip
    lines = [
        f"# The default model's gold test line over training seeds ({summary['task']})",
        "",
        f"Command: `{command}`. The default mix `{summary['mix']}`"
        f"{check_words(summary)} (chosen by cross-validation) "
        f"trained as `clinsynth run` trains the default model, once per seed, each with its hybrid's threshold "
        f"fitted on gold dev; scored on {sizes}, without the sentences whose text a model may have trained on. "
        "Δ: paired bootstrap 95% interval over notes. This measures how far one training's test line moves; it chooses "
        "nothing: the default model stays the seed-0 one.",
        "",
        format_table(headers, rows),
        "",
    ]
    return "\n".join(lines)


def write(task: Any, seeds: Sequence[int], out_dir: Path, command: str, *,
          models_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    summary = measure(task, seeds, models_dir or task.model_dir.parent / "final-seeds")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / f"{REPORT}.json", json.dumps(summary, indent=2))
    path = out_dir / f"{REPORT}.md"
    atomic_write_text(path, render(summary, command))
    return path, summary


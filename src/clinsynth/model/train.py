"""The train step: SetFit on a named mix of the task's data, thresholds on gold dev (a hybrid's rule
stack's too), saved with a card.

The default model (``task.model_dir``) is trained on the mix that scored best in the
task's cross-validated augmentation report (gold without one); ``clinsynth predict`` uses it
and trains it on first use if it is missing.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clinsynth.data.gold import WHOLE_NOTES_FILES, split_path, trainable_whole_sentences, unseen
from clinsynth.data.mixes import (
    WHOLE_NOTES_PART,
    MixSources,
    best_mix,
    load_mix,
    parse_mix,
    rejected_path,
    split_hybrid,
)
from clinsynth.data.task import Task
from clinsynth.errors import DataError
from clinsynth.fingerprint import file_sha256
from clinsynth.model.classifier import ModelInfo, SignsClassifier, TrainingBudget, write_card
from clinsynth.model.metrics import multilabel_scores

FALLBACK_MIX = "gold"
LLM_CHECK_REPORT = "llm-check.json"  # written by python -m evals.run llm-check; its "adopted" says where
CHECK_ROLE = "labeler"  # the LM role the check asks (clinsynth.programs.addition_check)


@dataclass(frozen=True)
class TrainConfig:
    # parts joined by '+': gold, silver, silver-confident, bronze, bronze-unfiltered; a final '+rules'
    # stacks the student with the task's rule list on gold dev (clinsynth.model.hybrid)
    mix: str = FALLBACK_MIX
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    seed: int = 0
    sources: MixSources | None = None  # None: the task's gold, silver and bronze
    show_progress: bool = True
    # A hybrid's additions are checked by the labeller LM when predicting (clinsynth.programs.addition_check);
    # the card records it, training is the same. default_llm_check says where cross-validation chose it.
    llm_check: bool = False


@dataclass
class TrainResult:
    out: Path
    mix: str
    classifier: SignsClassifier
    seconds: float

    @property
    def dev_scores(self) -> dict[str, Any]:
        return self.classifier.info.dev_scores

    @property
    def test_scores(self) -> dict[str, Any]:
        return self.classifier.info.test_scores


def mix_files(sources: MixSources, mix: str) -> list[Path]:
    """The files a mix reads (gold dev tunes thresholds, so it is always one of them)."""
    mix, hybrid = split_hybrid(mix)
    parts = parse_mix(mix)
    files = [sources.gold_dir / "train.jsonl", sources.gold_dir / "dev.jsonl"] if "gold" in parts else []
    if "gold" not in parts:
        files.append(sources.gold_dir / "dev.jsonl")
    if WHOLE_NOTES_PART in parts:
        files.append(sources.gold_dir / WHOLE_NOTES_FILES["train"])
    if any(p.startswith("silver") for p in parts):
        files.append(sources.silver)
    if any(p.startswith("bronze") for p in parts):
        # A reviewer's rejections decide which bronze sentences train, so they are data too.
        files += [sources.bronze, rejected_path(sources.bronze)]
    if hybrid and sources.rules is not None:
        files.append(sources.rules)
    return [f for f in files if f.exists()]


def trained_as(model_dir: Path, task: Task, config: TrainConfig) -> bool:
    """Whether ``model_dir`` holds a model ``train(task, config)`` would make now: the same mix,
    seed and budget, trained on files with the same hashes (its card's provenance), with the same
    LLM check."""
    info = _card(model_dir)
    return info is not None and _same_student(info, task, config) and _same_check(info, check_settings(task, config))


def rechecked(model_dir: Path, task: Task, config: TrainConfig) -> ModelInfo | None:
    """The card of the model in ``model_dir`` where its student is trained as ``config`` says (None otherwise).
    A card that names another LLM check (the task's LLM-check report was rerun since) gets the check
    ``config`` asks for written into it: the check decides at prediction time, so the student is not retrained."""
    info = _card(model_dir)
    if info is None or not _same_student(info, task, config):
        return None
    card, check = ModelInfo(**info), check_settings(task, config)
    if not _same_check(info, check):
        card.llm_check = check
        write_card(model_dir, card)
    return card


def check_settings(task: Task, config: TrainConfig) -> dict[str, Any]:
    """The card's ``llm_check`` for a model trained with ``config``: which LM role is asked, which report chose
    the check and, where that report fitted one, the student score under which an addition is asked about
    (``below``); empty without the check."""
    if not config.llm_check:
        return {}
    check: dict[str, Any] = {"role": CHECK_ROLE, "chosen_by": task.relative(task.reports_dir / LLM_CHECK_REPORT)}
    below = check_below(task, config.mix)
    if below is not None:
        check["below"] = below
    return check


def _card(model_dir: Path) -> dict[str, Any] | None:
    meta = Path(model_dir) / "clinsynth.json"
    return json.loads(meta.read_text(encoding="utf-8")) if meta.exists() else None


def _same_check(info: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the card ``info`` checks additions as ``wanted`` (``check_settings``) says: on or off, and under
    the same score (a card from before ``chosen_by`` was recorded still counts)."""
    saved = info.get("llm_check") or {}
    return (bool(saved), saved.get("below")) == (bool(wanted), wanted.get("below"))


def _same_student(info: dict[str, Any], task: Task, config: TrainConfig) -> bool:
    """Whether the card ``info`` is of a student trained on ``config``'s mix, seed and budget, from files with
    the hashes they have now."""
    sources = config.sources or MixSources.for_task(task)
    files = {task.relative(f): file_sha256(f) for f in mix_files(sources, config.mix)}
    budget = json.loads(json.dumps(asdict(config.budget)))  # as the card holds it (tuples as lists)
    try:  # a card written before a budget field existed holds that field's default
        saved = json.loads(json.dumps(asdict(TrainingBudget(**info.get("budget", {})))))
    except TypeError:  # a field this version does not know
        return False
    return (info.get("mix"), info.get("seed"), saved, info.get("data_files")) == (
        config.mix, config.seed, budget, files)


def reference_model_dir(model_dir: Path) -> Path:
    """Where the gold-only model sits beside the default one (gold test compares the two)."""
    return Path(model_dir).parent / f"{Path(model_dir).name}-gold"


def train(task: Task, config: TrainConfig, out: Path | None = None) -> TrainResult:
    """Train on ``config.mix``, tune thresholds on gold dev, score dev and test, save with its card."""
    out = out or task.model_dir
    sources = config.sources or MixSources.for_task(task)
    taxonomy = task.taxonomy
    gold = task.gold() if sources.gold_dir == task.gold_dir else _gold(sources, taxonomy)
    mix, hybrid = split_hybrid(config.mix)
    if hybrid and task.rules is None:
        raise DataError(f"mix {config.mix!r} stacks with the task's rule list, but the task has none (rules.yaml)",
                        path=task.config_path, field="rules")  # fmt: skip
    if config.llm_check and not hybrid:  # before minutes of training
        raise DataError(f"the LLM check reviews a hybrid's additions beyond the rule list: mix {config.mix!r} "
                        "is not a hybrid (MIX+rules)")  # fmt: skip
    records = load_mix(mix, taxonomy, sources)
    started = time.monotonic()
    classifier = SignsClassifier.train(
        records,
        taxonomy,
        dev=gold["dev"],
        budget=config.budget,
        seed=config.seed,
        mix=config.mix,
        show_progress=config.show_progress,
        progress_label=f"training {config.mix} on {len(records)} sentences",
        rules=task.rules,
    )
    if hybrid:
        # Gold dev alone, as every fold's hybrid is fitted on its inner dev: cross-validation on whole
        # notes (evals.whole_view) found that adding the whole dev notes' other sentences to the fit
        # costs F1 (AD micro -0.009 on whole notes; SDoH gold+bronze -0.014 enriched, -0.032 whole).
        classifier.stack_with_rules(task.rules, gold["dev"])
    info = classifier.info
    # Gold test without the sentences whose text the model may have trained on, as the reports score it.
    test = unseen(gold["test"], gold, trainable_whole_sentences(sources.gold_dir, taxonomy, gold))
    for records, target in ((gold["dev"], "dev_scores"), (test, "test_scores")):
        predicted = classifier.predict([r.text for r in records])
        setattr(info, target, multilabel_scores([r.labels for r in records], predicted, taxonomy))
    info.test_scores["left_out"] = len(gold["test"]) - len(test)
    info.test_scores["sha256"] = _test_sha256(sources)  # which test file the card's scores are of
    info.task, info.title = task.name, task.title
    info.data_files = {task.relative(f): file_sha256(f) for f in mix_files(sources, config.mix)}
    info.llm_check = check_settings(task, config)
    classifier.save(out)
    return TrainResult(out=out, mix=config.mix, classifier=classifier, seconds=time.monotonic() - started)


def ensure_trained(task: Task, config: TrainConfig, out: Path) -> tuple[ModelInfo, bool]:
    """The card (``ModelInfo``) of the model ``config`` trains, in ``out``, and whether it was already there:
    a rerun of the main job reuses a model trained the same way on the same files (``rechecked``) instead
    of spending minutes retraining it."""
    card = rechecked(out, task, config)
    # The card quotes gold test scores: a changed test file makes them stale, so that retrains too.
    if card is not None and card.test_scores.get("sha256") == _test_sha256(config.sources or MixSources.for_task(task)):
        return card, True
    return train(task, config, out=out).classifier.info, False


def _test_sha256(sources: MixSources) -> str | None:
    path = split_path("test", sources.gold_dir)
    return file_sha256(path) if path.exists() else None


def _gold(sources: MixSources, taxonomy: Any) -> dict[str, list[Any]]:
    from clinsynth.data.gold import load_gold

    return load_gold(sources.gold_dir, taxonomy)


def default_mix(task: Task) -> str:
    """The best mix by the task's cross-validated augmentation report, else gold."""
    report = task.reports_dir / "augmentation.json"
    if report.exists():
        return best_mix(json.loads(report.read_text(encoding="utf-8"))) or FALLBACK_MIX
    return FALLBACK_MIX


def default_llm_check(task: Task, mix: str, reports_dir: Path | None = None) -> bool:
    """Whether the default model of ``mix`` checks its additions with the LLM: only for a hybrid, and
    only where the task's cross-validated LLM-check report (``python -m evals.run llm-check``,
    ``reports_dir``, default the task's) adopted the check for the hybrid's student mix."""
    student, hybrid = split_hybrid(mix)
    return hybrid and bool(_llm_check_report(task, reports_dir).get("adopted", {}).get(student))


def check_below(task: Task, mix: str, reports_dir: Path | None = None) -> float | None:
    """The student score under which a checked hybrid of ``mix`` asks the LLM about an addition, as the
    task's LLM-check report fitted it; None (every addition is asked about) without one."""
    below = _llm_check_report(task, reports_dir).get("below", {}).get(split_hybrid(mix)[0])
    return None if below is None else float(below)


def _llm_check_report(task: Task, reports_dir: Path | None) -> dict[str, Any]:
    """The task's cross-validated LLM-check report (``reports_dir``, default the task's); empty without one."""
    report = (reports_dir or task.reports_dir) / LLM_CHECK_REPORT
    found = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    if found.get("neighbours"):
        # A saved model asks without neighbours: a report that measured the check with them cannot choose it.
        raise DataError("this LLM-check report was made with --neighbours, which a saved model does not use: "
                        "rerun `python -m evals.run llm-check` without it", path=report, field="neighbours")
    return found


def default_config(task: Task) -> TrainConfig:
    """How the task's default model is trained: the mix cross-validation chose, with the LLM check where it chose it."""
    mix = default_mix(task)
    return TrainConfig(mix=mix, llm_check=default_llm_check(task, mix))


def ensure_default_model(task: Task) -> Path:
    """The task's default model directory, trained first (a few minutes) if it does not exist yet."""
    if (task.model_dir / "clinsynth.json").exists():
        return task.model_dir
    config = default_config(task)
    print(f"no default model in {task.model_dir} yet: training one on {config.mix} (a few minutes on 2 cores)",
          flush=True)  # fmt: skip
    train(task, config)
    return task.model_dir

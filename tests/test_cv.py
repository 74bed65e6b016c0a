"""Cross-validation machinery and the fine-tuning helpers (no training here: see test_classifier)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from clinsynth.evals import cv

from clinsynth.data.mixes import MixSources
from clinsynth.data.records import Record, write_records
from clinsynth.errors import DataError
from clinsynth.model.finetune import length_batches, positive_weights
from tests.conftest import TWO_CATEGORY_YAML


def _pool(n_notes: int = 20, per_note: int = 3) -> list[Record]:
    out = []
    for note in range(n_notes):
        for s in range(per_note):
            labels = ["FEVER"] if (note + s) % 3 == 0 else ["COUGH"] if (note + s) % 3 == 1 else []
            text = f"sentence {s} of note {note}"
            out.append(Record(f"mts-{note}-s{s}", text, labels, "gold", note_id=f"mts-{note}"))
    return out


def test_folds_cover_every_sentence_once_and_never_split_a_note():
    pool = _pool()
    folds = cv.note_folds(pool, 5, seed=1)
    seen = np.concatenate(folds)
    assert sorted(seen.tolist()) == list(range(len(pool)))
    notes_per_fold = [{pool[i].note_id for i in fold} for fold in folds]
    for a in range(5):
        for b in range(a + 1, 5):
            assert not notes_per_fold[a] & notes_per_fold[b]
    assert [f.tolist() for f in cv.note_folds(pool, 5, seed=1)] == [f.tolist() for f in folds]
    assert [f.tolist() for f in cv.note_folds(pool, 5, seed=2)] != [f.tolist() for f in folds]


def test_inner_split_keeps_notes_whole():
    train, dev = cv.inner_split(_pool(), 0.2, seed=0)
    assert train and dev and not {r.note_id for r in train} & {r.note_id for r in dev}


def test_a_gold_share_keeps_whole_notes_nested_and_changes_only_the_gold_training_side(tmp_path: Path):
    from clinsynth.data.taxonomy import load_taxonomy

    pool = _pool(n_notes=40)
    half, quarter = cv.share_of_notes(pool, 0.5, fold=1), cv.share_of_notes(pool, 0.25, fold=1)
    notes = {r.note_id for r in half}
    assert len(notes) == 20 and len({r.note_id for r in quarter}) == 10
    assert {r.note_id for r in quarter} <= notes  # one shuffle a fold: a smaller share sits inside a larger
    assert all(r in half for r in pool if r.note_id in notes)  # whole notes
    assert half == cv.share_of_notes(pool, 0.5, fold=1) and half != cv.share_of_notes(pool, 0.5, fold=2)
    for bad in (0.0, 1.5):
        with pytest.raises(DataError, match="gold share"):
            cv.share_of_notes(pool, bad, fold=0)
    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    sources = MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "none", bronze=tmp_path / "none")
    full = cv.CrossValidation(pool, taxonomy, sources, tmp_path / "w", cv.CVSettings(folds=4))
    shared = cv.CrossValidation(pool, taxonomy, sources, tmp_path / "w", cv.CVSettings(folds=4, gold_share=0.5))
    for fold in range(4):
        (train, dev, evaluation), (half_train, half_dev, half_evaluation) = (
            full.fold_data("gold", 0, fold), shared.fold_data("gold", 0, fold))
        assert (dev, evaluation) == (half_dev, half_evaluation)
        assert set(r.id for r in half_train) < set(r.id for r in train)
        assert len({r.note_id for r in half_train}) == round(len({r.note_id for r in train}) / 2)
        assert shared.run_path("gold", 0, fold) != full.run_path("gold", 0, fold)  # its own cached run


def test_silver_from_held_out_notes_never_reaches_training(tmp_path: Path):
    from clinsynth.data.taxonomy import load_taxonomy

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    pool = _pool()
    silver = [Record(f"mts-{n}-s9", f"silver of note {n}", ["FEVER"], "silver", note_id=f"mts-{n}") for n in range(20)]
    write_records(tmp_path / "silver.jsonl", silver)
    sources = MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "silver.jsonl", bronze=tmp_path / "none")
    runner = cv.CrossValidation(pool, taxonomy, sources, tmp_path / "work", cv.CVSettings(folds=4))
    for fold in range(4):
        train, dev, evaluation = runner.fold_data("gold+silver", 0, fold)
        held = {r.note_id for r in evaluation} | {r.note_id for r in dev}
        assert all(r.note_id not in held for r in train)
        assert any(r.source == "silver" for r in train) and any(r.source == "gold" for r in train)
        assert not {r.id for r in train} & {r.id for r in evaluation}


def test_agreement_keeps_silver_the_student_labels_the_same_way():
    names = ["FEVER", "COUGH"]
    silver = [
        Record("a", "x", ["FEVER"], "silver"),
        Record("b", "y", ["FEVER"], "silver"),
        Record("c", "z", [], "silver"),
    ]
    scores = np.asarray([[0.9, 0.1], [0.2, 0.8], [0.1, 0.2]])
    kept = cv.agreeing_silver(silver, scores, {"FEVER": 0.5, "COUGH": 0.5}, names)
    assert [r.id for r in kept] == ["a", "c"]


def test_paired_ci_is_zero_for_equal_systems_and_positive_for_a_clearly_better_one(tmp_path: Path):
    from clinsynth.data.taxonomy import load_taxonomy

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    pool = _pool(30)
    gold = [list(r.labels) for r in pool]
    notes = [r.note_id for r in pool]
    rng = np.random.default_rng(0)
    noisy = [[["FEVER", "COUGH", None][rng.integers(3)]] for _ in pool]
    noisy = [[x for x in p if x] for p in noisy]
    same = cv.paired_ci(gold, notes, [noisy, noisy], [noisy, noisy], taxonomy)
    assert same["micro_f1"] == {"diff": 0.0, "low": 0.0, "high": 0.0}
    better = cv.paired_ci(gold, notes, [gold, gold], [noisy, noisy], taxonomy)
    for metric in cv.HEADLINE:
        assert better[metric]["low"] > 0 and better[metric]["low"] <= better[metric]["diff"] <= better[metric]["high"]


def test_positive_weights_are_capped_and_never_below_one():
    matrix = np.asarray([[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1]] + [[0, 0, 0]] * 40)
    assert positive_weights(matrix, cap=10.0).tolist() == [10.0, 1.0, 10.0]
    assert positive_weights(matrix, cap=20.0).tolist() == pytest.approx([20.0, 1.0, 41 / 3])
    assert positive_weights(np.ones((4, 1)), cap=10.0).tolist() == [1.0]
    # With a mask only the kept cells count: 1 positive and 2 negatives kept in the first column.
    mask = np.ones_like(matrix)
    mask[:, 0] = 0
    mask[:3, 0] = 1
    assert positive_weights(matrix, cap=10.0, mask=mask).tolist() == [2.0, 1.0, 10.0]


def test_length_batches_cover_each_sentence_once_per_epoch():
    lengths = [5, 50, 7, 48, 6, 51, 8, 3, 30]
    batches = length_batches(lengths, 4, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    assert all(1 <= len(b) <= 4 for b in batches)


def test_a_system_can_change_the_budget_and_is_compared_with_gold_trained_the_same_way():
    from clinsynth.data.mixes import best_mix
    from clinsynth.errors import ClinsynthError
    from clinsynth.model.classifier import TrainingBudget

    base = TrainingBudget()
    assert cv.split_system("gold+bronze", base) == ("gold+bronze", base)
    mix, budget = cv.split_system("gold+bronze@epochs=12,learning_rate=1e-4", base)
    assert mix == "gold+bronze" and budget.epochs == 12 and budget.learning_rate == 1e-4
    assert budget.batch_size == base.batch_size
    assert cv.split_system("gold@recipe=contrastive", base)[1].recipe == "contrastive"
    for bad in ("gold@epochs", "gold@nope=1", "gold@epochs=many", "gold@recipe=magic"):
        with pytest.raises(ClinsynthError, match="gold@|recipe"):
            cv.split_system(bad, base)
    available = {"gold": 1, "gold@epochs=12": 1, "gold+bronze": 1, "gold+bronze@epochs=12": 1}
    assert cv.reference_of("gold+bronze@epochs=12", available) == "gold@epochs=12"
    assert cv.reference_of("gold@epochs=12", available) == "gold"
    assert cv.reference_of("gold+bronze", available) == "gold"
    assert cv.reference_of("gold", available) is None
    assert cv.reference_of("gold+bronze@epochs=3", available) == "gold+bronze"  # what the recipe adds
    assert cv.reference_of("gold+silver@epochs=3", available) == "gold"
    hybrids = {**available, "gold+rules": 1, "gold+bronze+rules": 1, "gold+bronze@epochs=12+rules": 1}
    assert cv.reference_of("gold+bronze+rules", hybrids) == "gold"  # the main report: what everything adds
    assert cv.reference_of("gold+bronze@epochs=12+rules", hybrids) == "gold+bronze+rules"
    # A recipe variant is never picked as the default model's mix.
    rows = [{"system": "gold", "kind": "mix", "micro_f1": [0.5, 0], "macro_f1": [0.4, 0]},
            {"system": "gold+bronze@epochs=12", "kind": "mix", "micro_f1": [0.9, 0], "macro_f1": [0.9, 0]}]  # fmt: skip
    assert best_mix({"folds": 3, "systems": rows}) == "gold"


def test_a_budget_variant_trains_with_its_budget_and_reuses_runs_keyed_by_that_budget(tmp_path: Path, monkeypatch):
    from clinsynth.data.taxonomy import load_taxonomy
    from clinsynth.model.classifier import SignsClassifier

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    seen = []

    class Trained:
        def __init__(self, n):
            self.info = type("I", (), {"thresholds": {}, "train_seconds": 0.0, "epochs": []})()
            self.n = n

        def scores(self, texts):
            return np.zeros((len(texts), 2))

        def decide(self, scores, texts=None):
            return [[] for _ in scores]

    def fake_train(train, taxonomy, dev, budget, seed, mix, **progress):
        seen.append((mix, budget.epochs))
        return Trained(len(train))

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(fake_train))
    sources = MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "none", bronze=tmp_path / "none")
    runner = cv.CrossValidation(_pool(), taxonomy, sources, tmp_path / "work", cv.CVSettings(folds=3))
    default_epochs = cv.CVSettings().budget.epochs
    assert runner.run("gold@epochs=3", 0, 0).mix == "gold@epochs=3"
    runner.run(f"gold@epochs={default_epochs}", 0, 0)
    assert runner.run("gold", 0, 0).mix == "gold"  # same budget as the line above: reused, not retrained
    assert seen == [("gold", 3), ("gold", default_epochs)]


def test_cross_validation_decides_the_best_mix_on_micro_plus_macro():
    from clinsynth.data.mixes import best_mix

    cv_summary = {
        "folds": 3,
        "systems": [
            {"system": "gold", "kind": "mix", "micro_f1": [0.70, 0.01], "macro_f1": [0.50, 0.02]},
            {"system": "gold+bronze", "kind": "mix", "micro_f1": [0.69, 0.01], "macro_f1": [0.58, 0.02]},
            {"system": "keyword lexicon", "kind": "baseline", "micro_f1": [0.9, 0.0], "macro_f1": [0.9, 0.0]},
        ],
    }
    assert best_mix(cv_summary) == "gold+bronze"
    # A system only cross-validation can build is measured, never the default model's mix.
    cv_summary["systems"].append({"system": f"gold+{cv.WEAK}+rules", "kind": "hybrid", "micro_f1": [0.95, 0.0],
                                  "macro_f1": [0.95, 0.0]})  # fmt: skip
    assert best_mix(cv_summary) == "gold+bronze"


def test_a_missing_source_fails_before_any_training(tmp_path: Path, monkeypatch):
    from clinsynth.data.taxonomy import load_taxonomy
    from clinsynth.errors import DataError
    from clinsynth.model.classifier import SignsClassifier

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    from tests.mini_data import write_gold

    monkeypatch.setattr(SignsClassifier, "train", lambda *a, **k: pytest.fail("trained before checking data"))
    gold_dir = write_gold(tmp_path / "gold")
    sources = MixSources(gold_dir=gold_dir, silver=tmp_path / "none.jsonl", bronze=tmp_path / "none")
    settings = cv.CVSettings(mixes=("gold", f"gold+{cv.AGREE}"), seeds=(0,), folds=3, baselines=False)
    with pytest.raises(DataError, match="make silver") as err:
        cv.run(_pool(), taxonomy, sources, tmp_path / "work", settings)
    assert "none.jsonl" in str(err.value)


def test_the_paired_interval_is_around_the_observed_difference_of_the_scores():
    from tests.conftest import ad_taxonomy

    taxonomy = ad_taxonomy()
    names = list(taxonomy.names)
    rng = np.random.default_rng(1)
    gold = [[n for n in names if rng.random() < 0.2] for _ in range(90)]
    notes = [f"n{i // 3}" for i in range(90)]
    better = [list(g) if rng.random() < 0.9 else [] for g in gold]  # right on ~90% of sentences
    worse = [[names[0]] for _ in gold]
    from clinsynth.model.metrics import multilabel_scores

    ci = cv.paired_ci(gold, notes, [better], [worse], taxonomy)
    for metric in cv.HEADLINE:
        observed = multilabel_scores(gold, better, taxonomy)[metric] - multilabel_scores(gold, worse, taxonomy)[metric]
        assert ci[metric]["diff"] == pytest.approx(observed)
        assert ci[metric]["low"] <= observed <= ci[metric]["high"]
    assert ci["micro_f1"]["low"] > 0 and ci["macro_f1"]["low"] > 0
    same = cv.paired_ci(gold, notes, [better, worse], [better, worse], taxonomy)
    assert all(same[m]["low"] == same[m]["high"] == 0 for m in cv.HEADLINE)


def test_each_trained_run_prints_its_fold_score_and_the_time_left(tmp_path: Path, monkeypatch, capsys):
    from clinsynth.data.taxonomy import load_taxonomy
    from clinsynth.model.classifier import SignsClassifier

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")

    class Trained:
        info = type("I", (), {"thresholds": {}, "train_seconds": 30.0, "epochs": []})()

        def scores(self, texts):
            return np.zeros((len(texts), 2))

        def decide(self, scores, texts=None):
            return [[] for _ in scores]

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(lambda *a, **k: Trained()))
    sources = MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "none", bronze=tmp_path / "none")
    runner = cv.CrossValidation(_pool(), taxonomy, sources, tmp_path / "work", cv.CVSettings(mixes=("gold",),
                                seeds=(0,), folds=3))  # fmt: skip
    assert runner.plan() == (3, 0) and [p[:3] for p in runner.pending()] == [("gold", 0, f) for f in range(3)]
    assert not (tmp_path / "work").exists()  # planning writes nothing
    runner.plan()
    runner.run("gold", 0, 0)
    line = capsys.readouterr().out.strip()
    assert line.startswith("gold seed 0 fold 0: micro F1 0.000, macro F1 0.000 on the fold (30 s)")
    assert line.endswith("2 to train, about 1 min left")
    assert runner.plan() == (2, 1)  # the finished run is kept


def test_weakly_supervised_silver_is_relabelled_by_the_votes_of_the_llm_and_the_folds_gold_student(
    tmp_path: Path, monkeypatch
):
    from clinsynth.data.rules import load_rules
    from clinsynth.data.taxonomy import load_taxonomy
    from clinsynth.errors import DataError
    from clinsynth.model.classifier import SignsClassifier

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    # The LLM says FEVER for every silver sentence; the gold student and the rule list (a "febrile"
    # cue) agree only for notes 0, 4, 8...
    silver = [Record(f"mts-{n}-s9", f"silver of note {n}" + (" febrile" if n % 4 == 0 else ""), ["FEVER"], "silver",
                     note_id=f"mts-{n}") for n in range(40)]  # fmt: skip
    (tmp_path / "rules.yaml").write_text("categories:\n  FEVER:\n    cues: ['\\bfebrile\\b']\n")
    rules = load_rules(tmp_path / "rules.yaml", taxonomy.names)
    write_records(tmp_path / "silver.jsonl", silver)
    trained = []

    class Student:
        info = type("I", (), {"thresholds": {"FEVER": 0.5, "COUGH": 0.5}, "train_seconds": 0.0, "epochs": []})()

        def scores(self, texts):
            return np.asarray([[0.9 if t.endswith("febrile") else 0.1, 0.1] for t in texts])

        def decide(self, scores, texts=None):
            return [[] for _ in scores]

    def fake_train(train, taxonomy, dev, budget, seed, mix, **progress):
        trained.append(mix)
        return Student()

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(fake_train))
    sources = MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "silver.jsonl", bronze=tmp_path / "none")
    without_rules = cv.CrossValidation(_pool(40, 1), taxonomy, sources, tmp_path / "work", cv.CVSettings(folds=4))
    with pytest.raises(DataError, match="rules.yaml"):
        without_rules.fold_data(f"gold+{cv.WEAK}", 0, 0)
    runner = cv.CrossValidation(_pool(40, 1), taxonomy, sources, tmp_path / "work", cv.CVSettings(folds=4), rules)
    train, dev, evaluation = runner.fold_data(f"gold+{cv.WEAK}", 0, 0)

    assert trained == ["gold"]  # the fold's gold student, trained once
    weak = [r for r in train if r.source == "silver"]
    held = {r.note_id for r in evaluation} | {r.note_id for r in dev}
    assert weak and all(r.note_id not in held for r in weak)
    positive = [r for r in weak if r.labels]
    # All three voters agree on notes 0, 4, 8...: those are FEVER; elsewhere two of three say no.
    assert positive and all(int(r.note_id.split("-")[1]) % 4 == 0 and r.labels == ["FEVER"] for r in positive)
    # Of all silver, 10 positives and 10 of the 30 negatives are kept; then the held-out notes' leave.
    kept_positive = {f"mts-{n}" for n in range(0, 40, 4)} - held
    assert {r.note_id for r in positive} == kept_positive
    assert 0 < len(weak) - len(positive) <= 10

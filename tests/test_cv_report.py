"""The cross-validated augmentation report: every mix with CIs, the bronze learning curve, the gold-test line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from clinsynth.evals import cv, cv_report, experiment

from clinsynth.data.records import Provenance, Record, write_records
from clinsynth.data.task import load_task
from clinsynth.errors import DataError
from tests.conftest import TWO_CATEGORY_YAML, write_task
from tests.mini_data import write_gold


def _keyword_rule(text: str) -> list[str]:
    low = text.lower()
    return [
        c
        for c, keys in (("FEVER", ("fever", "febr", "temperature")), ("COUGH", ("cough",)))
        if any(k in low for k in keys)
    ]


class _Trained:
    """What cross-validation needs of a trained classifier; it predicts well only when bronze was in training."""

    names = ("FEVER", "COUGH")

    def __init__(self, with_bronze: bool) -> None:
        self.with_bronze = with_bronze
        self.info = type("Info", (), {"thresholds": {"FEVER": 0.5, "COUGH": 0.5}, "train_seconds": 1.0, "epochs": [],
                                      "mix": "gold+bronze", "created_at": "today", "data_files": {},
                                      "llm_check": {}})()  # fmt: skip

    def predict(self, texts: list[str]) -> list[list[str]]:
        return [_keyword_rule(t) if self.with_bronze else [] for t in texts]

    def scores(self, texts: list[str]):
        import numpy as np

        return np.asarray([[0.9 if n in labels else 0.1 for n in self.names] for labels in self.predict(texts)])

    def decide(self, scores, texts=None) -> list[list[str]]:
        return [[n for n, s in zip(self.names, row, strict=True) if s >= 0.5] for row in scores]


# A rule list that knows "fever" and "cough" but not "febrile" or "temperature".
RULES = r"""
about: test
scope:
  negation: ['\bdenies\b']
categories:
  FEVER:
    cues: ['\bfever\b']
  COUGH:
    cues: ['\bcough']
"""


@pytest.fixture
def task(tmp_path: Path, monkeypatch):
    from clinsynth.model.classifier import SignsClassifier

    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    gold = write_gold(tmp_path / "gold")
    experiment = '[experiment]\nmixes = ["gold", "gold+bronze:1", "gold+bronze"]\nfolds = 2\nseeds = [0, 1]\n'
    root = write_task(tmp_path / "task", taxonomy=tmp_path / "t.yaml", gold=gold, extra=experiment)
    bronze = [
        Record(f"b{i}", text, labels, "bronze",
               provenance=Provenance(lm="local", program="p", program_sha256="0", attributes={"target": labels[0]}))
        for i, (text, labels) in enumerate([("Fever of 39.", ["FEVER"]), ("Febrile all day.", ["FEVER"]),
                                            ("A wet cough.", ["COUGH"]), ("Coughing at night.", ["COUGH"])])
    ]  # fmt: skip
    write_records(root / "data" / "bronze.jsonl", bronze)
    (root / "rules.yaml").write_text(RULES)

    def fake_train(train, taxonomy, dev, budget, seed, mix, **progress):
        return _Trained(any(r.source == "bronze" for r in train))

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(fake_train))
    return load_task(root)


def test_the_report_has_every_mix_with_cis_the_learning_curve_findings_and_the_gold_test_line(task, tmp_path,
                                                                                              monkeypatch):
    settings = cv.CVSettings.for_task(task)
    assert settings.mixes == ("gold", "gold+bronze:1", "gold+bronze") and settings.folds == 2
    out = tmp_path / "report"
    command = "python -m evals.run augmentation"
    md_path, _ = experiment.cross_validate_task(task, settings, out, command, work_dir=tmp_path / "w")
    assert md_path == out / "augmentation.md"
    for name in ("augmentation.html", "augmentation.json", cv_report.CATEGORY_PNG, cv_report.CURVE_PNG):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "augmentation.json").read_text())
    rows = {r["system"]: r for r in summary["systems"]}
    assert rows["gold+bronze"]["vs_gold"]["micro_f1"]["low"] > 0  # the fake learns only from bronze
    assert summary["bronze_per_target"] == 2
    assert [n for n, _ in cv_report.curve_points(summary)] == [0, 1, None]
    md = md_path.read_text()
    assert "## Bronze learning curve" in md and "all (2 a category)" in md
    assert "No mix with LLM data is significantly worse than gold." in md
    assert "Cross-validation chooses `gold+bronze" in md
    # The task's rule list is the headline baseline; every mix is also stacked with it.
    assert rows["rule list"]["kind"] == "baseline" and "vs_rules" in rows["gold+bronze"]
    assert rows["gold+rules"]["kind"] == "hybrid"
    assert rows["gold+rules"]["vs_student"]["micro_f1"]["diff"] > 0  # the rules find what the empty student misses
    assert "Stacking with the rule list: `gold+rules` vs `gold` alone" in md
    assert "Δ macro vs rule list" in md
    # Gold test closes the report: no default model yet, the baselines are there.
    assert "## Gold test" in md and "No default model" in md and "keyword lexicon" in md.split("## Gold test")[1]

    # After the default model is trained, the main job rewrites only the test line (no run is repeated):
    # the default model on gold test with paired CIs against the rule list and the gold-only model.
    from clinsynth.model.classifier import SignsClassifier

    model_dir = tmp_path / "model"
    for folder in (model_dir, tmp_path / "model-gold"):
        folder.mkdir()
        (folder / "clinsynth.json").write_text("{}")
    monkeypatch.setattr(SignsClassifier, "load", staticmethod(lambda path, taxonomy=None: _Trained(
        Path(path).name == "model")))  # fmt: skip
    # Whole test notes (every sentence, mostly NONE) are scored beside the enriched test set.
    test = task.gold(("test",))["test"]
    whole = [*test, *(Record(f"{test[0].note_id}-w{i}", f"Plain sentence {i}.", [], "gold", note_id=test[0].note_id,
                             split="test") for i in range(6))]  # fmt: skip
    write_records(task.gold_dir / "whole_notes.jsonl", whole)
    cv.refresh_test_line(task, out, model_dir)
    md = (out / "augmentation.md").read_text()
    assert "| default model (gold+bronze) | 0.889" in md and "python -m evals.run augmentation" in md
    test_rows = {r["system"]: r for r in json.loads((out / "augmentation.json").read_text())["test"]["systems"]}
    assert set(test_rows) >= {"gold-only model", "rule list", "keyword lexicon"}
    default = test_rows["default model (gold+bronze)"]
    assert default["vs_gold"]["micro_f1"]["diff"] == pytest.approx(0.889, abs=1e-3)
    assert default["vs_rules"]["micro_f1"]["diff"] == pytest.approx(0.889 - 1.0, abs=1e-3)
    # The rule list is right everywhere on this test set, so the report says no system can be shown better.
    test_section = md.split("## Gold test")[1].split(f"### {cv_report.WHOLE_NOTES_TITLE}")[0]
    assert "The rule list is wrong on 0 (sentence, category) cells" in test_section
    assert "no system can be shown better than it here" in test_section
    assert "cells of the" in md and "pooled sentences (out of fold)" in md.split("## Every mix")[0]
    whole_section = md.split(f"### {cv_report.WHOLE_NOTES_TITLE}")[1]
    assert f"on {len(whole)} sentences of whole test notes" in whole_section and "of them NONE" in whole_section
    assert "rule list" in whole_section and "default model (gold+bronze)" in whole_section

    # A sentence of a whole train note can train a model, so a test sentence repeating it is left out too.
    train_note = task.gold(("train",))["train"][0].note_id
    write_records(task.gold_dir / "whole_train_notes.jsonl", [
        Record(f"{train_note}-w0", "Plain sentence 0.", [], "gold", note_id=train_note, split="train")])  # fmt: skip
    cv.refresh_test_line(task, out, model_dir)
    whole_section = (out / "augmentation.md").read_text().split(f"### {cv_report.WHOLE_NOTES_TITLE}")[1]
    assert f"on {len(whole) - 1} sentences of whole test notes" in whole_section
    assert "1 sentences whose text is also in train or dev are left out" in whole_section


def test_a_worse_mix_is_named_in_the_findings():
    ci = {"micro_f1": {"diff": -0.1, "low": -0.2, "high": -0.05}, "macro_f1": {"diff": 0.0, "low": -0.1, "high": 0.1}}
    row = {"system": "gold+silver", "kind": "mix", "reference": "gold", "vs_gold": ci,
           "micro_f1": [0.5, 0.0], "macro_f1": [0.5, 0.0], "per_category": {"A": [0.5, 0]}}  # fmt: skip
    gold = {
        "system": "gold",
        "kind": "mix",
        "micro_f1": [0.6, 0.0],
        "macro_f1": [0.5, 0.0],
        "per_category": {"A": [0.6, 0]},
    }
    summary = {"n": 10, "folds": 3, "support": {"A": 5}, "systems": [gold, row]}
    found = cv_report.findings(summary)
    assert "Significantly worse than gold on micro or macro F1: `gold+silver`." in found
    assert any("(worse)" in f and "(not significant)" in f for f in found)


def test_experiment_settings_are_checked_where_they_are_written(tmp_path):
    for bad, field in (('mixes = ["gold+platinum"]', "experiment.mixes"), ("seeds = 3", "experiment.seeds"),
                       ("folds = 1", "experiment.folds"), ("repeats = 2", "experiment"),
                       ('whole_view = "yes"', "experiment.whole_view")):  # fmt: skip
        root = write_task(tmp_path / field / bad[:5], extra=f"[experiment]\n{bad}\n")
        with pytest.raises(DataError) as info:
            cv.CVSettings.for_task(load_task(root))
        assert field in str(info.value) and "clinsynth.toml" in str(info.value)


def test_whole_notes_stop_near_the_limit_without_splitting_a_note():
    pool = [Record(f"{n}-{s}", "x", [], "gold", note_id=f"n{n}") for n in range(5) for s in range(3)]
    kept = cv.whole_notes(pool, 4)
    assert [r.id for r in kept] == ["0-0", "0-1", "0-2", "1-0", "1-1", "1-2"]
    assert cv.whole_notes(pool, None) == pool


def test_a_bronze_comparison_refuses_a_mix_that_reads_no_bronze(task, tmp_path):
    from clinsynth.evals import topup

    from clinsynth.errors import ClinsynthError

    settings = cv.CVSettings.for_task(task)
    with pytest.raises(ClinsynthError, match="reads no bronze"):
        topup.compare_bronze(task, settings, task.bronze, tmp_path / "out", "cmd", mix="gold")
    assert not (tmp_path / "out").exists()


def test_a_top_up_is_measured_against_the_task_bronze_on_the_same_folds(task, tmp_path, monkeypatch):
    from clinsynth.evals import topup

    from clinsynth.data.records import read_records
    from clinsynth.model.classifier import SignsClassifier

    class Learned(_Trained):
        """Finds a category only when bronze of that category was in training."""

        def __init__(self, categories: set[str]) -> None:
            super().__init__(True)
            self.categories = categories

        def predict(self, texts):
            return [[c for c in _keyword_rule(t) if c in self.categories] for t in texts]

    def fake_train(train, taxonomy, dev, budget, seed, mix, **progress):
        return Learned({c for r in train if r.source == "bronze" for c in r.labels})

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(fake_train))
    everything = list(read_records(task.bronze))
    write_records(task.bronze, [r for r in everything if r.labels == ["FEVER"]])  # the base lacks COUGH
    topped = tmp_path / "topped.jsonl"
    write_records(topped, everything)
    settings = cv.CVSettings.for_task(task)
    md_path, summary = topup.compare_bronze(task, settings, topped, tmp_path / "out", "python -m evals.run topup",
                                            work_dir=tmp_path / "w")  # fmt: skip
    assert summary["targeted"] == ["COUGH"]
    assert summary["bronze_counts"]["base"]["COUGH"] == 0 and summary["bronze_counts"]["topped-up"]["COUGH"] == 2
    assert summary["vs_base"]["macro_f1"]["low"] > 0  # only the top-up lets the fake find COUGH
    assert summary["per_category"]["base"]["FEVER"] == summary["per_category"]["topped-up"]["FEVER"]
    md = md_path.read_text()
    assert "COUGH (targeted)" in md and "topped-up - base" in md and "python -m evals.run topup" in md
    # The task has a rule list: the same runs are also compared as the hybrid a user would get.
    assert set(summary["hybrid"]["headline"]) == {"base", "topped-up"} and "gold+bronze+rules" in md
    assert summary["hybrid"]["vs_base"]["micro_f1"]["diff"] >= 0


def test_systems_with_several_budget_fields_survive_the_comma_separated_list():
    assert cv.parse_systems("gold, gold@epochs=6,encoder=/m/x ,gold+bronze") == (
        "gold", "gold@epochs=6,encoder=/m/x", "gold+bronze")  # fmt: skip
    assert cv.parse_systems("gold,gold+bronze:25") == ("gold", "gold+bronze:25")


def test_the_gold_curve_pairs_a_share_of_the_gold_notes_with_all_of_them_on_the_same_folds(task, tmp_path):
    from clinsynth.evals import gold_curve

    settings = cv.CVSettings.for_task(task, mixes=("gold", "gold+bronze"))
    md_path, summary = gold_curve.compare_shares(task, settings, 0.5, tmp_path / "out",
                                                 "python -m evals.run gold-curve", work_dir=tmp_path / "w")  # fmt: skip
    rows = {r["system"]: r for r in summary["systems"]}
    assert set(rows) == {"gold", "gold+rules", "gold+bronze", "gold+bronze+rules"}
    for row in rows.values():
        assert row["train_sentences"]["share"] < row["train_sentences"]["all"]
        # The fake learns from bronze only: on the same evaluation sentences, gold changes nothing.
        assert row["all_vs_share"]["micro_f1"]["diff"] == 0.0
    assert rows["gold+bronze"]["headline"]["all"]["micro_f1"][0] > rows["gold"]["headline"]["all"]["micro_f1"][0]
    md = md_path.read_text()
    assert "gold learning curve, 50% -> all" in md and "python -m evals.run gold-curve" in md
    assert json.loads((tmp_path / "out" / "gold_curve.json").read_text())["share"] == 0.5


def test_two_mixes_are_compared_student_to_student_and_hybrid_to_hybrid_on_the_same_folds(task, tmp_path):
    from clinsynth.evals import compare

    settings = cv.CVSettings.for_task(task, mixes=("gold+bronze", "gold"))
    md_path, summary = compare.compare_mixes(task, settings, "gold+bronze", "gold", tmp_path / "out",
                                             "python -m evals.run compare", work_dir=tmp_path / "w")  # fmt: skip
    pairs = {(p["new"], p["base"]): p for p in summary["pairs"]}
    assert set(pairs) == {("gold+bronze", "gold"), ("gold+bronze+rules", "gold+rules")}
    # The fake learns only from bronze: the student gains; the rule list already finds what it finds.
    assert pairs[("gold+bronze", "gold")]["new_vs_base"]["micro_f1"]["low"] > 0
    hybrid = pairs[("gold+bronze+rules", "gold+rules")]
    assert hybrid["new_vs_base"]["micro_f1"]["diff"] >= 0
    assert summary["train_sentences"]["gold+bronze"] > summary["train_sentences"]["gold"]
    md = md_path.read_text()
    assert "What `gold+bronze` adds over `gold`" in md and "new - base" in md and "python -m evals.run compare" in md


def test_whole_notes_are_scored_out_of_fold_and_a_finished_run_without_them_is_retrained_once(task, tmp_path,
                                                                                              monkeypatch):
    from clinsynth.evals import combiners, compare, whole_view

    from clinsynth.data.gold import WHOLE_NOTES_FILES
    from clinsynth.model.classifier import SignsClassifier

    settings = cv.CVSettings.for_task(task, mixes=("gold+bronze", "gold"))
    work = tmp_path / "w"
    experiment.cross_validate_task(task, settings, tmp_path / "first", "python -m evals.run cv", work_dir=work)
    before = {p.name: json.loads(p.read_text()) for p in work.glob("*.json")}
    assert before and all(run["whole_ids"] is None for run in before.values())

    # Whole notes arrive later: some train and dev notes with their other sentences, mostly NONE; the
    # rule list knows "fever" but not "febrile", which the fake student learns from bronze.
    def rows(split: str, extras: dict[str, list[tuple[str, list[str]]]]) -> str:
        return "".join(json.dumps({"id": f"{note}-x{k}", "text": text, "labels": labels, "source": "gold",
                                   "note_id": note, "split": split}) + "\n"
                       for note, sentences in extras.items() for k, (text, labels) in enumerate(sentences))  # fmt: skip

    (task.gold_dir / WHOLE_NOTES_FILES["train"]).write_text(rows("train", {
        "n0": [("Febrile overnight again.", ["FEVER"]), ("Plan to recheck labs.", [])],
        "n1": [("Lungs are clear.", [])], "n4": [("Febrile since Sunday.", ["FEVER"]), ("No edema.", [])],
        "n9": [("Febrile, coughing less.", ["FEVER", "COUGH"])], "n17": [("Return in a week.", [])]}))  # fmt: skip
    (task.gold_dir / WHOLE_NOTES_FILES["dev"]).write_text(rows("dev", {
        "n2": [("Febrile on arrival.", ["FEVER"]), ("Return in one week.", [])],
        "n6": [("No rash.", [])]}))  # fmt: skip
    trained = []
    train = SignsClassifier.train
    monkeypatch.setattr(SignsClassifier, "train", staticmethod(lambda *a, **k: trained.append(1) or train(*a, **k)))

    # Reports that show no whole-note view reuse the runs as they are, even for a task with the view.
    with_view = dataclasses.replace(settings, whole_view=True)
    combined = combiners.compare(task, with_view, work_dir=work)
    compare.compare_mixes(task, with_view, "gold+bronze", "gold", tmp_path / "cmp", "cmd", work_dir=work)
    assert combined["systems"] and trained == []
    # A plan counts the runs the view will retrain; one without the view keeps them all.
    assert cv.plan_task(task, settings, work_dir=work) == ([], len(before))
    assert len(cv.plan_task(task, with_view, work_dir=work)[0]) == len(before)

    md_path, summary = whole_view.whole_view(task, settings, tmp_path / "out", "python -m evals.run whole-view",
                                             work_dir=work)  # fmt: skip
    assert len(trained) == len(before)  # every kept run retrained once, under the same name
    after = {p.name: json.loads(p.read_text()) for p in work.glob("*.json")}
    assert set(after) == set(before)
    assert all(after[n]["predictions"] == before[n]["predictions"] for n in before)
    held_out = sorted(i for run in after.values() if (run["mix"], run["seed"]) == ("gold", 0) for i in run["whole_ids"])
    assert len(held_out) == 10 and len(set(held_out)) == 10  # each extra sentence out of fold once a seed

    whole = summary["sets"]["whole notes"]
    assert whole["sentences"] == 7 + 10 and whole["none"] > 0
    rows_by = {r["system"]: r for r in whole["systems"]}
    assert set(rows_by) >= {"rule list", "gold+bronze", "gold+bronze+rules",
                            "gold+bronze+rules" + whole_view.FIT_WHOLE}  # fmt: skip
    assert rows_by["gold+bronze"]["vs_rules"]["micro_f1"]["diff"] > 0  # "febrile" found beyond the rules
    pairs = {(p["new"], p["base"]): p["ci"] for p in whole["pairs"]}
    assert pairs[("gold+bronze", "gold")]["micro_f1"]["diff"] > 0
    assert ("gold+rules" + whole_view.FIT_WHOLE, "gold+rules") in pairs
    whole_view.whole_view(task, settings, tmp_path / "out", "python -m evals.run whole-view", work_dir=work)
    assert len(trained) == len(before)  # a second view trains nothing
    md = md_path.read_text()
    assert "## whole notes (17 sentences" in md and "fitted with whole dev notes" in md

    # A later round adds a whole train note: the runs keep their names (their own training data did
    # not change), but those that hold the note out or in their inner dev miss its scores, so the view
    # retrains them once more; a run that trains on the note scores none of its sentences.
    with (task.gold_dir / WHOLE_NOTES_FILES["train"]).open("a") as f:
        f.write(rows("train", {"n8": [("Febrile this morning.", ["FEVER"])]}))
    planned, kept = cv.plan_task(task, with_view, work_dir=work)
    _, summary = whole_view.whole_view(task, settings, tmp_path / "out", "cmd", work_dir=work)
    latest = {p.name: json.loads(p.read_text()) for p in work.glob("*.json")}
    assert set(latest) == set(before)
    assert all(latest[n]["predictions"] == before[n]["predictions"] for n in before)
    scoring_n8 = [n for n, run in latest.items() if "n8-x0" in run["whole_ids"] + run["dev_whole_ids"]]
    assert sum("n8-x0" in run["whole_ids"] for run in latest.values()) == 2 * 2  # held out once per mix and seed
    assert len(trained) == len(before) + len(scoring_n8) < 2 * len(before)
    assert {(latest[n]["mix"], latest[n]["seed"], latest[n]["fold"]) for n in scoring_n8} == {p[:3] for p in planned}
    assert (len(planned), kept) == (len(scoring_n8), len(before) - len(scoring_n8))
    assert summary["sets"]["whole notes"]["sentences"] == 7 + 10 + 2  # n8: its picked sentence and the new one
    whole_view.whole_view(task, settings, tmp_path / "out", "cmd", work_dir=work)
    assert len(trained) == len(before) + len(scoring_n8)


def test_with_the_whole_view_the_experiment_scores_whole_notes_and_chooses_on_both_sets(task, tmp_path):
    from clinsynth.data.gold import WHOLE_NOTES_FILES

    # Whole train notes full of "febrile" sentences the rule list misses and the bronze student finds.
    (task.gold_dir / WHOLE_NOTES_FILES["train"]).write_text("".join(
        json.dumps({"id": f"n{i}-x", "text": "Febrile again overnight.", "labels": ["FEVER"], "source": "gold",
                    "note_id": f"n{i}", "split": "train"}) + "\n" for i in (0, 1, 4, 5, 8, 9)))  # fmt: skip
    settings = cv.CVSettings.for_task(task, mixes=("gold", "gold+bronze"), whole_view=True)
    md_path, summary = experiment.cross_validate_task(task, settings, tmp_path / "out", "clinsynth run",
                                              work_dir=tmp_path / "w")  # fmt: skip
    whole = {r["system"]: r for r in summary["whole_view"]["systems"]}
    assert set(whole) == {"gold", "gold+rules", "gold+bronze", "gold+bronze+rules", "rule list"}
    assert summary["whole_view"]["sentences"] == 12  # 6 picked sentences and 6 more of their notes
    assert whole["gold+bronze"]["vs_rules"]["micro_f1"]["diff"] > 0
    md = md_path.read_text()
    assert "## Whole notes (out of fold)" in md and "on the enriched pool and on whole notes, averaged" in md


def test_the_whole_view_joins_the_choice_of_the_default_mix():
    from clinsynth.data.mixes import best_mix

    def row(system: str, micro: float, macro: float) -> dict:
        return {"system": system, "kind": "hybrid", "micro_f1": [micro, 0.0], "macro_f1": [macro, 0.0]}

    summary = {"systems": [row("gold+bronze+rules", 0.80, 0.74), row("gold+whole-notes+bronze+rules", 0.80, 0.73)]}
    assert best_mix(summary) == "gold+bronze+rules"
    summary["whole_view"] = {"systems": [row("gold+bronze+rules", 0.69, 0.68),
                                         row("gold+whole-notes+bronze+rules", 0.71, 0.69)]}  # fmt: skip
    assert best_mix(summary) == "gold+whole-notes+bronze+rules"
    # A candidate the view lacks (its whole-note mean would be unknown) sends every candidate back to
    # the enriched pool, so none is ranked on a measure the others are not.
    summary["systems"].append(row("gold+rules", 0.79, 0.735))
    assert best_mix(summary) == "gold+bronze+rules"


def test_a_saved_hybrid_fits_its_threshold_on_gold_dev_alone_as_each_fold_does(task, tmp_path, monkeypatch):
    from clinsynth.data.gold import WHOLE_NOTES_FILES
    from clinsynth.model import train as train_step
    from clinsynth.model.classifier import SignsClassifier

    dev = task.gold()["dev"]
    note = dev[0].note_id
    (task.gold_dir / WHOLE_NOTES_FILES["dev"]).write_text(json.dumps(
        {"id": f"{note}-x", "text": "Return in a week.", "labels": [], "source": "gold", "note_id": note,
         "split": "dev"}) + "\n")  # fmt: skip
    assert task.whole_notes(dev, "dev")  # whole dev notes exist, and stay out of the fit
    fitted_on: list[list[str]] = []

    class Saved(_Trained):
        def stack_with_rules(self, rules, held_out) -> None:
            fitted_on.append([r.id for r in held_out])

        def save(self, out) -> None:
            pass

    monkeypatch.setattr(SignsClassifier, "train", staticmethod(lambda *a, **k: Saved(True)))
    result = train_step.train(task, train_step.TrainConfig(mix="gold+rules"), out=tmp_path / "m")
    assert fitted_on == [[r.id for r in dev]]
    assert not any(WHOLE_NOTES_FILES["dev"] in f for f in result.classifier.info.data_files)
    assert any(f.endswith("rules.yaml") for f in result.classifier.info.data_files)

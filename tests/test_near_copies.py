"""Near-copies across folds: a held-out sentence is marked only when something its fold may train on
is a near-copy of it, and the report's hybrid is the one of every report, split into subsets."""

import json

import pytest
from clinsynth.evals import near_copies
from clinsynth.evals.cv import CVSettings

from clinsynth.data.records import Record
from clinsynth.data.task import load_task
from clinsynth.paths import PROJECT_ROOT as REPO

COPIED = "Patient is an 82-year-old female with worsening memory loss over the past two years."
RECOPIED = "Patient is an 84-year-old female with worsening memory loss over the past two years."
TEMPLATE = "Patient is an 82-year-old male who presents with a painful swollen left knee after a fall."


def gold(sentence_id: str, text: str, note: str) -> Record:
    return Record(id=sentence_id, text=text, labels=[], source="gold", note_id=note)


def test_a_near_copy_counts_only_where_the_fold_may_train_on_it():
    pool = [
        gold("a1", COPIED, "n1"),  # fold 0; its near-copy b1 is in fold 1: marked, and so is b1
        gold("b1", RECOPIED, "n2"),
        gold("c1", "She is oriented to person, place and time.", "n3"),  # fold 0; its copy is in its own note
        gold("d1", "Mood is euthymic and affect is full.", "n4"),  # fold 1; near-copy only in bronze
        gold("e1", TEMPLATE, "n5"),  # fold 1; shares a template opening with a1, no more
        gold("f1", "Her daughter manages the finances now.", "n6"),  # fold 0; copy in a whole note of fold 1
    ]
    extras = [
        gold("x1", "She is oriented to person, place, and time.", "n3"),  # same note as c1: trained on with it
        gold("x2", "Her daughter manages her finances now.", "n4"),  # a note of fold 1
    ]
    folds = [["a1", "c1", "f1"], ["b1", "d1", "e1"]]
    near = near_copies.fold_near_copies(pool, folds, extras, ["Mood is euthymic and affect is full"])
    assert dict(zip([r.id for r in pool], near.tolist(), strict=True)) == {
        "a1": True, "b1": True, "c1": False, "d1": True, "e1": False, "f1": True}  # fmt: skip


def test_a_fold_without_training_data_has_no_near_copies():
    pool = [gold("a1", COPIED, "n1"), gold("b1", RECOPIED, "n1")]
    assert not near_copies.fold_near_copies(pool, [["a1", "b1"]], [], []).any()


def test_the_report_splits_the_hybrid_of_every_report_into_sentences_with_and_without_near_copies():
    task = load_task(REPO / "tasks" / "sdoh")
    settings = CVSettings.for_task(task)
    summary = near_copies.compare(task, settings)
    reported = {r["system"]: r for r in json.loads((task.reports_dir / "augmentation.json").read_text())["systems"]}
    for entry in summary["mixes"]:
        everything, clean, copies = (entry["subsets"][name] for name in near_copies.SUBSETS)
        assert everything["micro_f1"][0] == pytest.approx(reported[entry["mix"] + "+rules"]["micro_f1"][0], abs=1e-9)
        assert everything["sentences"] == summary["n"] == clean["sentences"] + copies["sentences"]
        assert 0 < copies["sentences"] < summary["n"] / 4
    assert 0 < summary["gold_test"]["near_copies"] < summary["gold_test"]["sentences"]


def test_the_command_writes_the_report_naming_itself(tmp_path):
    from clinsynth.evals import run

    argv = ["near-copies", "--task", str(REPO / "tasks" / "sdoh"), "--mixes", "gold", "--out-dir", str(tmp_path)]
    assert run.main(argv) == 0
    report = (tmp_path / "near_copies.md").read_text()
    assert "Command: `python -m evals.run near-copies --task" in report
    assert "| gold+rules" in report and "without a near-copy" in report
    assert json.loads((tmp_path / "near_copies.json").read_text())["mixes"][0]["mix"] == "gold"


def test_runs_of_another_mix_that_hold_other_folds_are_refused_not_scored_against_the_wrong_mask(tmp_path):
    import shutil
    from dataclasses import replace

    from clinsynth.evals.cv import task_cross_validation

    from clinsynth.errors import DataError

    task = load_task(REPO / "tasks" / "sdoh")
    work = tmp_path / "runs"
    shutil.copytree(task.reports_dir / "cv-runs", work)
    settings = replace(CVSettings.for_task(task), mixes=("gold", "gold+bronze"), seeds=(0,))
    assert near_copies.compare(task, settings, work_dir=work)["mixes"][1]["mix"] == "gold+bronze"
    # One gold+bronze run now holds its fold's sentences in another order than gold's runs.
    path = task_cross_validation(task, settings, work_dir=work).run_path("gold+bronze", 0, 0)
    run = json.loads(path.read_text())
    run["ids"] = run["ids"][::-1]
    path.write_text(json.dumps(run))
    with pytest.raises(DataError, match=r"gold\+bronze: its runs hold other folds"):
        near_copies.compare(task, settings, work_dir=work)

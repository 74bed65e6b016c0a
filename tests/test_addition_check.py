"""A saved model's LLM check: where cross-validation adopts it, what it asks, what it drops, and that a
user's text reaches the LM only through the privacy session."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import dspy
import numpy as np
import pytest
from clinsynth.evals import llm_check
from clinsynth.programs.addition_check import AdditionCheck, addition_cells
from dspy.utils import DummyLM

from clinsynth.app.predict import PredictConfig, predict, predict_texts
from clinsynth.data.privacy import Endpoint
from clinsynth.data.task import load_task
from clinsynth.errors import PrivacyError
from clinsynth.llm.lm import LMHandle
from clinsynth.model.train import LLM_CHECK_REPORT, default_llm_check
from tests.conftest import TWO_CATEGORY_YAML, write_task
from tests.mini_data import write_gold

RULES = "about: test\ncategories:\n  FEVER:\n    cues: ['\\bfever\\b']\n  COUGH:\n    cues: ['\\bcough']\n"
TEXTS = ["He has a fever and a cough.", "Temperature 39.2 C, hacking all night.", "Abdomen soft.",
         "Febrile overnight.", "Productive cough since Monday."]  # fmt: skip


def dummy_handle(answer: bool, n: int = 50) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(lm=DummyLM([{"present": answer}] * n, adapter=adapter), adapter=adapter,
                    endpoint=Endpoint("openai/d", "http://127.0.0.1:1/v1"), name="dummy")  # fmt: skip


def make_task(tmp_path: Path, **kwargs):
    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    root = write_task(tmp_path / "task", taxonomy=tmp_path / "t.yaml", gold=write_gold(tmp_path / "gold"), **kwargs)
    (root / "rules.yaml").write_text(RULES)
    return load_task(root)


def checked_model(mini_trained, out: Path) -> Path:
    """The shared tiny student, saved with a card that asks for the LLM check."""
    _, _, classifier = mini_trained
    copy = replace(classifier.info, llm_check={"role": "labeler", "chosen_by": "reports/llm-check.json"})
    saved = type(classifier)(classifier.model, copy, classifier.rules)
    return saved.save(out)


def test_the_check_is_adopted_only_where_it_beat_the_hybrid_with_a_ci_above_0(tmp_path):
    def row(mix, low, high=0.02):
        ci = {"diff": 0.01, "low": low, "high": high}
        return {"mix": mix, "combiner": llm_check.CHECKED, "vs_hybrid": {"micro_f1": ci, "macro_f1": ci}}

    adopted = llm_check.adopted([row("gold+bronze", 0.001), row("gold", 0.0),
                                 {"mix": "gold", "combiner": llm_check.HYBRID}])  # fmt: skip
    assert adopted == {"gold+bronze": True, "gold": False}
    # Whole notes count as the pool does: a gain there adopts it, a loss there (CI below 0) vetoes it.
    assert llm_check.adopted([row("gold", 0.0)], [row("gold", 0.002)]) == {"gold": True}
    assert llm_check.adopted([row("gold", 0.001)], [row("gold", -0.03, -0.001)]) == {"gold": False}
    assert llm_check.adopted([row("gold", 0.001)], [row("gold", -0.03, 0.01)]) == {"gold": True}
    task = make_task(tmp_path)
    task.reports_dir.mkdir(parents=True, exist_ok=True)
    assert not default_llm_check(task, "gold+bronze+rules")  # no report: no check
    (task.reports_dir / LLM_CHECK_REPORT).write_text(json.dumps({"adopted": adopted}))
    assert default_llm_check(task, "gold+bronze+rules")
    assert not default_llm_check(task, "gold+bronze")  # a plain student has no additions to check
    assert not default_llm_check(task, "gold+rules")


def test_only_additions_beyond_the_rule_list_are_asked_and_a_no_drops_them(tmp_path):
    task = make_task(tmp_path)
    labels = [["FEVER", "COUGH"], ["FEVER", "COUGH"], [], ["FEVER"], ["COUGH"]]
    cells = addition_cells(TEXTS, labels, task.rules, task.taxonomy.names)
    assert cells == [(1, "FEVER"), (1, "COUGH"), (3, "FEVER")]  # the rule fires on the others
    handle = dummy_handle(False)
    kept, asked = AdditionCheck(task.taxonomy, task.rules, handle).revise(TEXTS, labels)
    assert kept == [["FEVER", "COUGH"], [], [], [], ["COUGH"]]
    assert asked[1] == {"FEVER": "no", "COUGH": "no"} and asked[0] == {} and asked[3] == {"FEVER": "no"}
    assert len(handle.lm.history) == 3
    yes = AdditionCheck(task.taxonomy, task.rules, dummy_handle(True)).revise(TEXTS, labels)[0]
    assert yes == labels
    # Below a score: the student's confident additions stand unasked; only (1, COUGH) scored under 0.8.
    scores = [{"FEVER": 0.9, "COUGH": 0.9}, {"FEVER": 0.95, "COUGH": 0.5}, {}, {"FEVER": 0.8}, {"COUGH": 0.9}]
    handle = dummy_handle(False)
    kept, asked = AdditionCheck(task.taxonomy, task.rules, handle, below=0.8).revise(TEXTS, labels, scores)
    assert kept == [["FEVER", "COUGH"], ["FEVER"], [], ["FEVER"], ["COUGH"]] and len(handle.lm.history) == 1
    assert asked[1] == {"COUGH": "no"} and asked[3] == {}
    with pytest.raises(ValueError, match="scores"):
        AdditionCheck(task.taxonomy, task.rules, handle, below=0.8).revise(TEXTS, labels)


def test_the_bar_below_which_the_llm_is_asked_is_fitted_for_the_best_f1_and_the_fewest_calls():
    gold = np.array([[True], [False], [True], [False]])
    decided = np.array([[True], [True], [True], [True]])  # four additions
    with_check = np.array([[False], [False], [True], [False]])  # the LLM said no to a right one (row 0)
    scores = np.array([[0.97], [0.7], [0.8], [0.62]])
    # Asking under 0.95 keeps row 0 (confident, right) and still drops the two wrong ones.
    assert llm_check.below_checked(decided, with_check, scores, 0.95).ravel().tolist() == [True, False, True, False]
    # Under 0.75 only the two wrong ones (0.7, 0.62) are asked and dropped: perfect, with the fewest calls.
    assert llm_check.fit_below([(decided, with_check, scores, gold)]) == 0.75
    all_right = np.array([[True], [True], [True], [True]])  # the LLM only hurts: the lowest bar, no call
    assert llm_check.fit_below([(decided, with_check, scores, all_right)]) == llm_check.BELOW_GRID[0]


def test_checking_below_a_score_is_chosen_where_it_passes_and_scores_at_least_as_well():
    def row(combiner, low, high, f1):
        ci = {"diff": 0.01, "low": low, "high": high}
        return {"mix": "m", "combiner": combiner, "vs_hybrid": {"micro_f1": ci, "macro_f1": ci},
                "micro_f1": (f1, 0.0), "macro_f1": (f1, 0.0)}  # fmt: skip

    pool = [row(llm_check.CHECKED, -0.01, 0.02, 0.80), row(llm_check.SCORED, 0.002, 0.02, 0.81)]
    whole = [row(llm_check.CHECKED, -0.02, 0.01, 0.70), row(llm_check.SCORED, 0.001, 0.01, 0.71)]
    assert llm_check.choose(pool, whole, {"m": 0.8}) == ({"m": True}, {"m": 0.8})
    harmed = [row(llm_check.CHECKED, -0.02, 0.01, 0.70), row(llm_check.SCORED, -0.03, -0.001, 0.69)]
    assert llm_check.choose(pool, harmed, {"m": 0.8}) == ({"m": False}, {})


def test_predict_with_a_checked_model_asks_about_each_addition_and_writes_what_it_was_told(mini_trained, tmp_path):
    task = make_task(tmp_path)
    model_dir = checked_model(mini_trained, tmp_path / "model")
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    student = mini_trained[2].predict(TEXTS)
    expected = addition_cells(TEXTS, student, task.rules, task.taxonomy.names)
    assert expected, "the tiny student must add something beyond the rules for this test to mean anything"

    handle = dummy_handle(False)
    result = predict(task, PredictConfig(tmp_path / "in.txt", tmp_path / "out.jsonl", model=model_dir,
                                         backend="torch"), handle=handle)  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert result.sentences == len(rows) == len(TEXTS) and len(handle.lm.history) == len(expected)
    assert result.check_usage == {}  # the check ran; this injected LM is not metered
    for i, row in enumerate(rows):
        added = {name for j, name in expected if j == i}
        assert row["labels"] == [n for n in student[i] if n not in added]  # every rule hit stays
        assert row.get("llm_check", {}) == dict.fromkeys(added, "no")
    rows_yes = predict_texts(task, TEXTS, model_dir, backend="torch", handle=dummy_handle(True))
    assert [r["labels"] for r in rows_yes] == student


def test_a_users_text_is_not_sent_to_a_remote_unapproved_checker(mini_trained, tmp_path, monkeypatch):
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may be built"))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    task = make_task(tmp_path, labeler=("openai/gpt-4o-mini", None))
    model_dir = checked_model(mini_trained, tmp_path / "model")
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    with pytest.raises(PrivacyError, match="in.txt"):
        predict(task, PredictConfig(tmp_path / "in.txt", tmp_path / "out.jsonl", model=model_dir, backend="torch"))
    assert not (tmp_path / "out.jsonl").exists()


def test_a_model_is_reused_as_the_default_only_if_its_card_asks_for_the_check_the_config_does(tmp_path):
    from clinsynth.model.train import TrainConfig, trained_as
    from tests.test_final_seeds import write_card

    task = make_task(tmp_path)
    write_card(task, TrainConfig(mix="gold"), tmp_path / "m")
    assert trained_as(tmp_path / "m", task, TrainConfig(mix="gold"))
    assert not trained_as(tmp_path / "m", task, TrainConfig(mix="gold", llm_check=True))
    card = json.loads((tmp_path / "m" / "clinsynth.json").read_text())
    card["llm_check"] = {"role": "labeler"}
    del card["budget"]["rule_hints"]  # a card from before that field: its default
    (tmp_path / "m" / "clinsynth.json").write_text(json.dumps(card))
    assert trained_as(tmp_path / "m", task, TrainConfig(mix="gold", llm_check=True))


def test_on_ray_the_driver_checks_the_workers_rows_and_writes_the_output_whole(tmp_path):
    from clinsynth.app.predict import _check_file

    task = make_task(tmp_path)
    labels = [["FEVER", "COUGH"], ["FEVER", "COUGH"], [], ["FEVER"], ["COUGH"]]
    student = tmp_path / "out.jsonl.student"
    student.write_text("".join(json.dumps({"id": f"L{i}", "text": t, "labels": ls}) + "\n"
                               for i, (t, ls) in enumerate(zip(TEXTS, labels, strict=True))))  # fmt: skip
    counts = _check_file(AdditionCheck(task.taxonomy, task.rules, dummy_handle(False)), student, tmp_path / "out.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["labels"] for r in rows] == [["FEVER", "COUGH"], [], [], [], ["COUGH"]]
    assert rows[1]["llm_check"] == {"FEVER": "no", "COUGH": "no"} and "llm_check" not in rows[0]
    assert counts == {"FEVER": 1, "COUGH": 2, "NONE": 3} and not student.exists()


def test_asking_for_the_check_on_a_plain_student_fails_before_any_training(tmp_path, monkeypatch):
    from clinsynth.errors import DataError
    from clinsynth.model.classifier import SignsClassifier
    from clinsynth.model.train import TrainConfig, train

    monkeypatch.setattr(SignsClassifier, "train", lambda *a, **k: pytest.fail("nothing may be trained"))
    with pytest.raises(DataError, match="not a hybrid"):
        train(make_task(tmp_path), TrainConfig(mix="gold", llm_check=True), out=tmp_path / "m")


def test_the_model_card_names_the_bar_under_which_the_llm_is_asked(mini_trained):
    from clinsynth.model.classifier import model_card

    info = mini_trained[2].info
    every = model_card(replace(info, llm_check={"role": "labeler", "chosen_by": "reports/llm-check.json"}))
    below = model_card(replace(info, llm_check={"role": "labeler", "chosen_by": "r", "below": 0.8}))
    assert "LLM check: each label the student adds beyond the rule list is kept only if" in every
    assert "beyond the rule list with a score under 0.8 is kept only if" in below

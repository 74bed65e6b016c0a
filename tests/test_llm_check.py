"""The hybrid with the LLM's yes/no on the student's additions: what is asked, what is dropped,
where the check is used, and that gold reaches an LM only through the privacy session."""

import dspy
import numpy as np
import pytest
from clinsynth.evals import combiners, llm_check
from clinsynth.evals.cv import CVSettings
from clinsynth.programs.verify_category import CategoryCheck, NeighbourCheck, Neighbours
from dspy.utils import DummyLM

from clinsynth.data.privacy import Endpoint
from clinsynth.data.records import Record
from clinsynth.data.task import LMSpec, load_task
from clinsynth.errors import DataError, PrivacyError
from clinsynth.llm.lm import LMHandle
from clinsynth.paths import PROJECT_ROOT as REPO
from tests.conftest import ad_task

NAMES = ("A", "B")


def dummy_handle(answers: list[dict]) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(lm=DummyLM(answers, adapter=adapter), adapter=adapter,
                    endpoint=Endpoint("openai/d", "http://127.0.0.1:1/v1"), name="dummy")  # fmt: skip


def test_the_check_drops_only_the_additions_the_llm_rejects_and_never_a_rule_hit():
    decided = np.array([[True, True], [True, False], [False, True]])
    hits = np.array([[1, 0], [1, 0], [0, 0]])  # A's positives come from the rule; B's are the student's
    ids = ["s0", "s1", "s2"]
    answers = {("s0", "B"): False, ("s0", "A"): False}  # ("s0", "A") is a rule hit: never asked, never dropped
    out = llm_check.checked(decided, hits, ids, NAMES, answers)
    assert out.tolist() == [[True, False], [True, False], [False, True]]  # s2/B unanswered: it stays
    assert llm_check.additions(decided, hits).tolist() == [[False, True], [False, False], [False, True]]


def test_the_check_is_used_only_in_categories_where_it_raised_f1_on_held_out_sentences():
    gold = np.array([[True, False], [False, True], [False, True], [True, False]])
    without = np.array([[True, True], [True, True], [False, True], [True, False]])
    # A: the check drops a false positive (F1 up); B: it drops two true positives (F1 down).
    with_check = np.array([[True, True], [False, False], [False, False], [True, False]])
    assert llm_check.check_helps(with_check, without, gold).tolist() == [True, False]
    assert llm_check.check_helps(without, without, gold).tolist() == [False, False]  # a tie keeps the hybrid


def test_the_program_asks_about_one_category_with_its_part_of_the_guideline_only():
    taxonomy = ad_task().taxonomy
    handle = dummy_handle([{"present": True}, {"present": False}])
    program = CategoryCheck(taxonomy)
    with handle.context():
        yes = program(sentence="Daughter says she gets lost driving.", category="SAFETY_CONCERNS")
        no = program(sentence="He denies memory problems.", category="COGNITIVE_IMPAIRMENT")
    assert (yes.present, no.present) == (True, False)
    prompt = " ".join(m["content"] for m in handle.lm.history[0]["messages"])
    assert taxonomy.category_text("SAFETY_CONCERNS") in prompt and "gets lost driving" in prompt
    assert "### COGNITIVE_IMPAIRMENT" not in prompt and taxonomy.general_rules_text in prompt


def test_neighbours_are_the_nearest_that_document_the_category_and_that_do_not_from_other_notes():
    records = [
        Record("a1", "Daughter says he gets lost driving home.", ["NOTICE_BY_OTHERS"], "gold", note_id="a"),
        Record("b1", "Wife reports he forgets names of friends.", ["NOTICE_BY_OTHERS"], "gold", note_id="b"),
        Record("b2", "Son says he forgets to pay bills.", ["NOTICE_BY_OTHERS"], "gold", note_id="b"),
        Record("c1", "He says he gets lost driving home.", ["COGNITIVE_IMPAIRMENT"], "gold", note_id="c"),
        Record("c2", "Abdomen is soft and nontender.", [], "gold", note_id="c"),
        Record("d1", "Wife says he gets lost driving home.", ["NOTICE_BY_OTHERS"], "gold", note_id="d"),
    ]
    shown = Neighbours(records, k=1).shown("Wife says he gets lost driving home.", "NOTICE_BY_OTHERS", note="a")
    # Own note (a1) and the sentence itself (d1) are never shown; one of each side, the most similar last.
    assert shown.splitlines() == ['- "Wife reports he forgets names of friends." -> true',
                                  '- "He says he gets lost driving home." -> false']  # fmt: skip


def test_the_neighbour_check_puts_the_neighbours_between_the_guideline_and_the_sentence():
    taxonomy = ad_task().taxonomy
    records = [Record("x1", "Wife reports he forgets names.", ["NOTICE_BY_OTHERS"], "gold", note_id="x"),
               Record("y1", "Abdomen is soft.", [], "gold", note_id="y")]  # fmt: skip
    handle = dummy_handle([{"present": True}])
    with handle.context():
        said = NeighbourCheck(taxonomy, Neighbours(records, k=1))(sentence="Son says she repeats herself.",
                                                                 category="NOTICE_BY_OTHERS", note="z")  # fmt: skip
    assert said.present is True
    prompt = handle.lm.history[0]["messages"][-1]["content"]
    guideline, shown, sentence = (prompt.index(taxonomy.category_text("NOTICE_BY_OTHERS")),
                                  prompt.index('"Wife reports he forgets names." -> true'),
                                  prompt.index("Son says she repeats herself."))  # fmt: skip
    assert guideline < shown < sentence and '"Abdomen is soft." -> false' in prompt


def test_a_report_made_with_neighbours_cannot_choose_a_saved_models_check(tmp_path):
    from clinsynth.model.train import default_llm_check

    task = ad_task()
    (tmp_path / "llm-check.json").write_text('{"neighbours": 3, "adopted": {"gold": true}}')
    with pytest.raises(DataError, match="--neighbours"):
        default_llm_check(task, "gold+rules", reports_dir=tmp_path)


def test_the_guideline_is_its_general_rules_and_category_parts():
    taxonomy = ad_task().taxonomy
    text = taxonomy.guideline_text
    assert taxonomy.general_rules_text in text
    assert all(taxonomy.category_text(n) in text for n in taxonomy.names)


def test_on_the_committed_runs_a_check_that_agrees_is_the_hybrid_and_one_that_rejects_all_is_not(tmp_path):
    task = load_task(REPO / "tasks" / "sdoh")
    settings = CVSettings.for_task(task, seeds=(0,))
    hybrid = next(r for r in combiners.compare(task, settings)["systems"]
                  if r["combiner"] == combiners.HYBRID and r["mix"] == settings.mixes[-1])  # fmt: skip
    yes = llm_check.compare(task, settings, handle=dummy_handle([{"present": True}] * 200))
    asked = yes["cells"]
    assert asked > 0 and yes["failed"] == 0
    assert sum(c["asked"] for c in yes["check"].values()) == asked
    assert sum(c["dropped_right"] + c["dropped_wrong"] for c in yes["check"].values()) == 0
    row = {(r["mix"], r["combiner"]): r for r in yes["systems"]}
    mix = settings.mixes[-1]
    assert row[(mix, llm_check.HYBRID)]["micro_f1"] == pytest.approx(hybrid["micro_f1"])
    assert row[(mix, llm_check.CHECKED)]["micro_f1"] == pytest.approx(hybrid["micro_f1"])
    no = llm_check.compare(task, settings, handle=dummy_handle([{"present": False}] * 200))
    dropped = sum(c["dropped_right"] + c["dropped_wrong"] for c in no["check"].values())
    assert dropped == asked
    rejected = {(r["mix"], r["combiner"]): r for r in no["systems"]}[(mix, llm_check.CHECKED)]
    assert rejected["micro_f1"] != pytest.approx(hybrid["micro_f1"])
    report = llm_check.render(no, "cmd")
    assert llm_check.CHECKED in report and "dropped, wrong" in report
    # The task scores whole notes: both hybrids are scored there too, the check dropping every addition.
    whole = {(r["mix"], r["combiner"]): r for r in no["whole"]["systems"]}
    assert no["whole"]["notes"] >= 2 and no["whole"]["none"] > no["whole"]["sentences"] / 2
    assert {llm_check.HYBRID, llm_check.CHECKED, llm_check.SCORED} == {c for m, c in whole if m == mix}
    assert whole[(mix, llm_check.CHECKED)]["micro_f1"] != pytest.approx(whole[(mix, llm_check.HYBRID)]["micro_f1"])
    assert "## Whole notes" in report
    # A check that says yes to everything changes nothing, under any bar.
    assert row[(mix, llm_check.SCORED)]["micro_f1"] == pytest.approx(hybrid["micro_f1"])


def test_with_neighbours_every_question_shows_pool_sentences_of_other_notes_and_the_report_chooses_nothing():
    task = load_task(REPO / "tasks" / "sdoh")
    settings = CVSettings.for_task(task, seeds=(0,))
    handle = dummy_handle([{"present": True}] * 200)
    summary = llm_check.compare(task, settings, handle=handle, neighbours=1)
    assert summary["neighbours"] == 1 and summary["cells"] == len(handle.lm.history) > 0
    for call in handle.lm.history:
        shown = call["messages"][-1]["content"].split("[[ ## annotated ## ]]")[1].split("[[ ## sentence ## ]]")[0]
        assert len([line for line in shown.splitlines() if line.startswith("- ")]) == 2  # one per side
    report = llm_check.render(summary, "cmd")
    assert "NeighbourCheck" in report and "The check is adopted" not in report


def test_gold_is_not_sent_to_a_remote_unapproved_lm(monkeypatch):
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may be built"))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    task = load_task(REPO / "tasks" / "sdoh")
    with pytest.raises(PrivacyError, match="gold train"):
        llm_check.compare(task, CVSettings.for_task(task, seeds=(0,)), lm=LMSpec("openai/gpt-4o-mini"))

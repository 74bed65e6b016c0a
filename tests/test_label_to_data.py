import dspy
import pytest
from clinsynth.programs.label_to_data import (
    MULTI_TARGET,
    NEGATIVE_KINDS,
    NONE_TARGET,
    LabelToData,
    clean_sentence,
    describe_target,
    plan_call,
)
from dspy.utils import DummyLM

from tests.conftest import ad_taxonomy


@pytest.fixture(scope="module")
def taxonomy():
    return ad_taxonomy()


def test_plans_are_reproducible_and_vary_between_calls(taxonomy):
    first = [plan_call(taxonomy, "COGNITIVE_IMPAIRMENT", i, seed=0) for i in range(20)]
    again = [plan_call(taxonomy, "COGNITIVE_IMPAIRMENT", i, seed=0) for i in range(20)]
    assert first == again
    for key in ("note_type", "section", "reporter", "severity", "tense", "abbreviations", "length", "focus"):
        assert len({p.attributes[key] for p in first}) > 1, key
    assert plan_call(taxonomy, "COGNITIVE_IMPAIRMENT", 0, seed=1) != first[0]
    assert all(p.labels == ("COGNITIVE_IMPAIRMENT",) for p in first)


def test_categories_stated_with_another_get_a_companion_and_their_own_reporters(taxonomy):
    hints = taxonomy.category("NOTICE_BY_OTHERS").generation
    for i in range(10):
        plan = plan_call(taxonomy, "NOTICE_BY_OTHERS", i, seed=0)
        assert len(plan.labels) == 2 and "NOTICE_BY_OTHERS" in plan.labels
        assert plan.attributes["reporter"] in hints.reporters
        # Other categories are stated by clinicians or the patient, not relatives (that would
        # make them NOTICE_BY_OTHERS too).
        other = plan_call(taxonomy, "TREATMENT", i, seed=0)
        assert other.attributes["reporter"] not in hints.reporters


def test_negative_and_multi_label_plans(taxonomy):
    negatives = [plan_call(taxonomy, NONE_TARGET, i, seed=0) for i in range(30)]
    assert all(p.labels == () for p in negatives)
    assert {p.attributes["negative_kind"] for p in negatives} == set(NEGATIVE_KINDS)
    text = describe_target(taxonomy, (), negatives[0].attributes)
    assert "(label NONE)" in text and negatives[0].attributes["negative_kind"] in text
    multi = [plan_call(taxonomy, MULTI_TARGET, i, seed=0) for i in range(10)]
    assert all(len(p.labels) == 2 and list(p.labels) == taxonomy.canonical(p.labels) for p in multi)
    assert "all in one sentence" in describe_target(taxonomy, multi[0].labels, multi[0].attributes)


def test_guideline_examples_are_not_shown_to_the_generator(taxonomy):
    plan = plan_call(taxonomy, "COGNITIVE_IMPAIRMENT", 0, seed=0)
    text = describe_target(taxonomy, plan.labels, plan.attributes)
    assert taxonomy.category("COGNITIVE_IMPAIRMENT").definition in text
    assert not any(ex.text in text for ex in taxonomy.category("COGNITIVE_IMPAIRMENT").examples)


def test_forward_cleans_splits_and_deduplicates(taxonomy):
    answer = {
        "sentences": [
            '1. "Pt forgets recent conversations."',
            "- Pt forgets recent conversations.",
            "She got lost driving. Her son now drives her.",
            "x",
        ]
    }
    program = LabelToData(taxonomy, n=3)
    with dspy.context(lm=DummyLM([answer], adapter=dspy.JSONAdapter()), adapter=dspy.JSONAdapter()):
        pred = program.run_request(plan_call(taxonomy, "COGNITIVE_IMPAIRMENT", 0, seed=0))
    assert pred.sentences == ["Pt forgets recent conversations.", "She got lost driving.", "Her son now drives her."]


def test_an_answer_with_no_usable_sentence_is_an_error(taxonomy):
    program = LabelToData(taxonomy)
    with dspy.context(lm=DummyLM([{"sentences": ["", "ok"]}], adapter=dspy.JSONAdapter()), adapter=dspy.JSONAdapter()):
        with pytest.raises(ValueError, match="no usable sentence"):
            program(target="t", constraints="c")


def test_clean_sentence():
    assert clean_sentence("  2) 'Memory intact.' ") == "Memory intact."
    assert clean_sentence("MMSE 24/30.") == "MMSE 24/30."


def test_a_string_instead_of_a_list_is_split_into_sentences(taxonomy):
    lm = DummyLM([{"sentences": "Pt repeats questions. She forgets names."}], adapter=dspy.JSONAdapter())
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        pred = LabelToData(taxonomy)(target="t", constraints="c")
    assert pred.sentences == ["Pt repeats questions.", "She forgets names."]


def test_a_salvaged_answer_is_traced_so_an_optimizer_can_keep_it(taxonomy):
    lm = DummyLM([{"sentences": "Pt repeats questions. She forgets names."}], adapter=dspy.JSONAdapter())
    program = LabelToData(taxonomy)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter(), trace=[]):
        program(target="t", constraints="c")
        trace = dspy.settings.trace
    assert len(trace) == 1
    predictor, inputs, outputs = trace[0]
    assert predictor is program.generate
    assert inputs == {"target": "t", "constraints": "c", "n": 5}
    assert outputs.sentences == ["Pt repeats questions.", "She forgets names."]


def test_plans_state_the_subject_rule_and_steer_forms_and_shorthand(taxonomy):
    from clinsynth.programs.label_to_data import FORMS, SUBJECT_RULE, request_inputs

    plans = [plan_call(taxonomy, "TREATMENT", i, seed=0) for i in range(40)]
    assert {p.attributes["form"] for p in plans} == set(FORMS)
    used = [p.attributes["shorthand"] for p in plans if "shorthand" in p.attributes]
    assert 5 < len(used) < 35 and set(used) <= set(taxonomy.category("TREATMENT").generation.shorthand)
    with_shorthand = next(p for p in plans if "shorthand" in p.attributes)
    inputs = request_inputs(taxonomy, with_shorthand, 5)
    assert f"'{with_shorthand.attributes['shorthand']}'" in inputs["target"]
    assert SUBJECT_RULE in inputs["target"]
    assert with_shorthand.attributes["form"] in inputs["constraints"]


def test_a_top_up_can_ask_every_call_for_shorthand_including_a_companion_category(taxonomy):
    always = [plan_call(taxonomy, "REQUIRING_ASSISTANCE", i, seed=0, shorthand_share=1.0) for i in range(10)]
    assert all(p.attributes["shorthand"] in taxonomy.category("REQUIRING_ASSISTANCE").generation.shorthand
               for p in always)  # fmt: skip
    # NOTICE_BY_OTHERS is always written with a companion category: its own shorthand still applies.
    reported = [plan_call(taxonomy, "NOTICE_BY_OTHERS", i, seed=0, shorthand_share=1.0) for i in range(10)]
    assert all(len(p.labels) == 2 for p in reported)
    assert all(p.attributes["shorthand"] in taxonomy.category("NOTICE_BY_OTHERS").generation.shorthand
               for p in reported)  # fmt: skip
    never = [plan_call(taxonomy, "REQUIRING_ASSISTANCE", i, seed=0, shorthand_share=0.0) for i in range(10)]
    assert not any("shorthand" in p.attributes for p in never)
    # The share changes only the shorthand draw: every other attribute of a plan stays.
    strip = lambda p: {k: v for k, v in p.attributes.items() if k != "shorthand"}  # noqa: E731
    assert [strip(p) for p in always] == [strip(p) for p in never]

"""The rule list: loading with file:line errors, scope (negation, someone else, hypothetical), the bundled lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinsynth.data.rules import load_rules
from clinsynth.data.task import load_task
from clinsynth.errors import DataError

NAMES = ("TOBACCO", "LIVING_SITUATION", "MEMORY")

RULES = r"""
about: "test list"
scope:
  negation: ['\bdenies\b', '\bno\b']
  other_person: ['\b(husband|mother|father)\b']
  hypothetical: ['\bif\b']
categories:
  TOBACCO:
    cues: ['\bsmok(e|es|ed|er|ing)\b', '\btob\b', '\bppd\b']
    exclude: ['second-?hand smoke']
    negation: keep
  LIVING_SITUATION:
    cues: ['\blives (alone|with)\b']
    other_person: keep
  MEMORY:
    cues: ['\bforget(s|ful)?\b', '\bmemory loss\b']
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_scope_decides_whether_a_cue_labels(tmp_path):
    rules = load_rules(write(tmp_path, RULES), NAMES)
    assert rules.labels("Smokes 1 ppd.") == ["TOBACCO"]
    assert rules.labels("Denies tob use.") == ["TOBACCO"]  # negation kept: status none is still TOBACCO
    assert rules.labels("Her husband smokes.") == []  # someone else's use
    assert rules.labels("Lives with her husband.") == ["LIVING_SITUATION"]  # other_person kept
    assert rules.labels("No memory loss.") == []  # negation drops MEMORY
    assert rules.labels("If she becomes forgetful, call.") == []
    assert rules.labels("Mother is forgetful. He is forgetful.") == ["MEMORY"]  # the second clause is his
    assert rules.labels("Exposure to second-hand smoke.") == []  # excluded
    assert rules.labels("He denies smoking but lives alone, forgetful.") == ["TOBACCO", "LIVING_SITUATION", "MEMORY"]


def test_blocked_names_the_categories_only_someone_else_carries(tmp_path):
    rules = load_rules(write(tmp_path, RULES), NAMES)
    assert rules.blocked("Her husband smokes.", "other_person") == ["TOBACCO"]
    assert rules.blocked("Her husband smokes and she smokes too.", "other_person") == ["TOBACCO"]
    assert rules.blocked("Her husband smokes. She smokes too.", "other_person") == []


def test_out_of_scope_names_what_a_sentence_is_not_evidence_for(tmp_path):
    rules = load_rules(write(tmp_path, RULES), NAMES)
    # A relative's wording: TOBACCO's cue is blocked, MEMORY does not keep someone else's wording,
    # LIVING_SITUATION does (a spouse one lives with is the patient's situation).
    assert rules.out_of_scope("Her husband smokes.") == {"TOBACCO", "MEMORY"}
    assert rules.out_of_scope("No memory loss.") == {"MEMORY"}  # negation counts at a cue only
    assert rules.out_of_scope("If she becomes forgetful, call.") == set(NAMES)
    assert rules.out_of_scope("He denies smoking but lives alone, forgetful.") == set()  # every cue labels
    assert rules.out_of_scope("Mother is forgetful. He is forgetful.") == {"TOBACCO"}  # MEMORY fires
    assert rules.out_of_scope("She is tired.") == set()
    texts = ["No memory loss.", "ok", "Smokes 1 ppd; if forgetful, call."]
    hits, matrix = rules.scope_matrices(texts, ["MEMORY", "OTHER", "TOBACCO"])
    assert matrix.tolist() == [[True, False, False], [False, False, False], [True, False, False]]
    assert np.array_equal(hits, rules.hit_matrix(texts, ["MEMORY", "OTHER", "TOBACCO"]))  # one pass, same hits
    assert [m.shape for m in rules.scope_matrices([], NAMES)] == [(0, 3), (0, 3)]


def test_hit_matrix_follows_the_given_column_order(tmp_path):
    rules = load_rules(write(tmp_path, RULES), NAMES)
    matrix = rules.hit_matrix(["smokes", "lives alone", "ok"], ["LIVING_SITUATION", "TOBACCO", "OTHER"])
    assert matrix.tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0]]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (RULES.replace(r"'\btob\b'", "'(unclosed'"), 9, "categories.TOBACCO.cues[1]"),
        (RULES.replace("TOBACCO:", "TOBACO:"), 8, "unknown key 'TOBACO'"),
        (RULES.replace("negation: keep", "negation: maybe"), 11, "categories.TOBACCO.negation"),
        (RULES.replace(r"'\bppd\b'", "'x?'"), 9, "matches the empty string"),
        (RULES.replace("  hypothetical:", "  hypotheticals:"), 6, "unknown key 'hypotheticals'"),
    ],
)
def test_a_bad_rules_file_names_file_line_and_field(tmp_path, text, line, words):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        load_rules(path, NAMES)
    message = str(err.value)
    assert f"{path}:{line}:" in message
    assert words in message


def test_a_task_names_a_missing_rules_file_as_its_config_field(tmp_path):
    (tmp_path / "clinsynth.toml").write_text('name = "t"\nrules = "nope.yaml"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"clinsynth.toml: field 'rules'"):
        load_task(tmp_path)


@pytest.mark.parametrize(
    ("task", "sentence", "expected"),
    [
        ("tasks/sdoh", "Denies ETOH.", ["ALCOHOL"]),
        ("tasks/sdoh", "Father was an alcoholic.", []),
        ("tasks/sdoh", "Smokes 1 ppd x 20 years.", ["TOBACCO"]),
        ("tasks/sdoh", "Lives with her husband.", ["LIVING_SITUATION"]),
        ("tasks/sdoh", "Abdomen is soft and nontender.", []),
        ("tasks/ad_signs", "MMSE 24/30.", ["COGNITIVE_TESTING"]),
        ("tasks/ad_signs", "Alert and oriented x3.", []),
        ("tasks/ad_signs", "Mother had Alzheimer disease.", []),
        ("tasks/ad_signs", "Started donepezil 5 mg nightly.", ["TREATMENT"]),
    ],
)
def test_the_bundled_tasks_rule_lists_load_and_follow_their_guidelines(task, sentence, expected):
    rules = load_task(task).rules
    assert rules is not None and rules.about
    assert rules.labels(sentence) == expected

from pathlib import Path
from typing import Literal, get_args

import pytest

from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.errors import DataError
from tests.conftest import ad_taxonomy

GUIDELINE_ORDER = (
    "COGNITIVE_IMPAIRMENT",
    "NOTICE_BY_OTHERS",
    "NEUROPSYCHIATRIC_SYMPTOMS",
    "PHYSIOLOGICAL_CHANGES",
    "REQUIRING_ASSISTANCE",
    "COGNITIVE_TESTING",
    "DIAGNOSIS",
    "TREATMENT",
    "SAFETY_CONCERNS",
)


def test_ad_taxonomy_has_the_nine_guideline_categories_in_order():
    taxonomy = ad_taxonomy()
    assert taxonomy.names == GUIDELINE_ORDER
    assert len(taxonomy.general_rules) == 5


def test_guideline_text_carries_definitions_rules_and_examples():
    taxonomy = ad_taxonomy()
    text = taxonomy.guideline_text
    for category in taxonomy.categories:
        assert f"### {category.name}" in text
        assert category.definition in text
    assert '"Alert and oriented x3." -> NONE' in text
    assert "Family history of dementia in mother." in text


def test_label_type_is_a_list_of_literals_from_the_file():
    taxonomy = ad_taxonomy()
    (inner,) = get_args(taxonomy.label_type())
    assert inner.__origin__ is Literal
    assert get_args(inner) == GUIDELINE_ORDER
    assert get_args(get_args(taxonomy.label_type(allow_none=True))[0])[-1] == "NONE"


def test_canonical_and_first_label_follow_guideline_order():
    taxonomy = ad_taxonomy()
    assert taxonomy.canonical(["DIAGNOSIS", "NONE", "COGNITIVE_IMPAIRMENT", "DIAGNOSIS"]) == [
        "COGNITIVE_IMPAIRMENT",
        "DIAGNOSIS",
    ]
    assert taxonomy.first_label(["SAFETY_CONCERNS", "NOTICE_BY_OTHERS"]) == "NOTICE_BY_OTHERS"
    assert taxonomy.first_label([]) == "NONE"


def test_another_taxonomy_file_needs_no_code_change(mini_taxonomy_path: Path):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    assert taxonomy.names == ("FEVER", "COUGH")
    assert get_args(get_args(taxonomy.label_type())[0]) == ("FEVER", "COUGH")
    assert "- Not: Denies cough." in taxonomy.guideline_text


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: x\ncategories: [", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping"),
        ("name: x\ncategories: []\n", "'categories' must be a non-empty list"),
        (
            "name: x\ncategories:\n  - {name: A_B, definition: d}\n  - {name: A_B, definition: e}\n",
            "duplicate category name 'A_B'",
        ),
        ("name: x\ncategories:\n  - {name: lower, definition: d}\n", "UPPER_SNAKE_CASE"),
        ("name: x\ncategories:\n  - {name: NONE, definition: d}\n", "reserved"),
        ("name: x\ncategories:\n  - {name: A}\n", "'definition' must be a non-empty string"),
        (
            "name: x\ncategories:\n  - name: A\n    definition: d\n    examples: [{text: t, labels: [B]}]\n",
            "unknown label",
        ),
    ],
)
def test_malformed_taxonomy_is_a_clear_error_naming_the_file(tmp_path: Path, body: str, message: str):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(DataError) as err:
        load_taxonomy(path)
    assert str(path) in str(err.value)
    assert message in str(err.value)


def test_missing_taxonomy_file_names_it(tmp_path: Path):
    with pytest.raises(DataError, match="nope.yaml: taxonomy file not found"):
        load_taxonomy(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "body, line, key, first",
    [
        ("name: x\nname: y\ncategories:\n  - {name: A, definition: d}\n", 2, "name", 1),
        ("name: x\ncategories:\n  - name: A\n    definition: d\n    definition: e\n", 5, "definition", 4),
        ("name: x\ncategories:\n  - {name: A, definition: d, name: B}\n", 3, "name", 3),
    ],
)
def test_a_repeated_yaml_key_is_an_error_naming_file_line_and_key(
    tmp_path: Path, body: str, line: int, key: str, first: int
):
    path = tmp_path / "dup.yaml"
    path.write_text(body)
    with pytest.raises(DataError) as err:
        load_taxonomy(path)
    assert f"{path}:{line}: invalid taxonomy: duplicate key {key!r} (first on line {first})" in str(err.value)
    # Overriding a merged anchor ("<<") is not a repeat.
    path.write_text("base: &b {name: A, definition: d}\nname: x\ncategories:\n  - <<: *b\n    definition: e\n")
    assert load_taxonomy(path).category("A").definition == "e"


def test_a_taxonomy_in_another_encoding_is_a_data_error_naming_the_line(tmp_path: Path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\ncategories:\n  - {name: A, definition: f\u00e9bril}\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.yaml:3: not valid UTF-8"):
        load_taxonomy(path)
    path.write_bytes(b"\xef\xbb\xbf" + "name: x\ncategories:\n  - {name: A, definition: f\u00e9bril}\n".encode())
    assert load_taxonomy(path).category("A").definition == "f\u00e9bril"

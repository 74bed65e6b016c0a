"""``clinsynth predict`` input readers and output rows, with a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinsynth.errors import DataError
from clinsynth.predict import predict_file, read_sentences

NOTE = """HISTORY OF PRESENT ILLNESS:  Febrile to 39 C overnight. Productive cough.

PLAN:  Follow up in two weeks."""


def test_txt_lines_keep_distinct_ids_even_when_repeated(tmp_path: Path):
    path = tmp_path / "s.txt"
    path.write_text("Cough.\n\nCough.\nFever.\n")
    sentences = read_sentences(path)
    assert [s.id for s in sentences] == ["s-L1", "s-L3", "s-L4"]
    assert [s.text for s in sentences] == ["Cough.", "Cough.", "Fever."]


def test_csv_and_jsonl_inputs_and_their_errors(tmp_path: Path):
    (tmp_path / "a.csv").write_text("id,text\nx1,Cough.\nx2,Fever.\n")
    assert [(s.id, s.text) for s in read_sentences(tmp_path / "a.csv")] == [("x1", "Cough."), ("x2", "Fever.")]
    (tmp_path / "a.jsonl").write_text('{"id": "j1", "text": "Cough."}\n{"id": "j2"}\n')
    with pytest.raises(DataError) as err:
        read_sentences(tmp_path / "a.jsonl")
    assert "a.jsonl:2" in str(err.value) and "text" in str(err.value)
    with pytest.raises(DataError, match="not found"):
        read_sentences(tmp_path / "missing.txt")


def test_notes_are_split_into_sentences_with_sections(tmp_path: Path):
    (tmp_path / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": NOTE}) + "\n")
    sentences = read_sentences(tmp_path / "notes.jsonl", notes=True)
    assert [s.text for s in sentences] == ["Febrile to 39 C overnight.", "Productive cough.", "Follow up in two weeks."]
    assert {s.note_id for s in sentences} == {"n1"} and len({s.id for s in sentences}) == 3
    assert sentences[0].section == "HISTORY OF PRESENT ILLNESS" and sentences[2].section == "PLAN"
    (tmp_path / "note.txt").write_text(NOTE)
    assert len(read_sentences(tmp_path / "note.txt", notes=True)) == 3  # a TXT file is one note


@pytest.fixture
def model(mini_trained):
    return mini_trained[2]


def test_predict_file_writes_one_row_per_sentence_with_scores(model, tmp_path: Path):
    (tmp_path / "notes.jsonl").write_text(json.dumps({"id": "n1", "text": NOTE}) + "\n")
    out = tmp_path / "out" / "pred.jsonl"
    result = predict_file(model, tmp_path / "notes.jsonl", out, notes=True)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["sentences"] == len(rows) == 3
    for row in rows:
        assert set(row["scores"]) == {"FEVER", "COUGH"} and row["note_id"] == "n1"
        assert row["labels"] == [n for n in ("FEVER", "COUGH") if row["scores"][n] >= model.info.thresholds[n]]
    assert sum(result["label_counts"].values()) >= 3
    assert not list(out.parent.glob("*.tmp"))


def test_a_bad_input_leaves_an_existing_output_untouched(model, tmp_path: Path):
    out = tmp_path / "pred.jsonl"
    out.write_text("previous results\n")
    (tmp_path / "bad.csv").write_text("sentence\nCough.\n")
    with pytest.raises(DataError, match="text"):
        predict_file(model, tmp_path / "bad.csv", out)
    assert out.read_text() == "previous results\n"


def test_cli_predict_labels_a_text_file_with_a_given_model(model, tmp_path: Path, capsys):
    from clinsynth.cli import main

    model.save(tmp_path / "model")
    (tmp_path / "in.txt").write_text("Febrile to 39 C.\nDry cough.\nFollow up in two weeks.\n")
    out = tmp_path / "pred.jsonl"
    assert (
        main(["predict", "--input", str(tmp_path / "in.txt"), "--out", str(out), "--model", str(tmp_path / "model")])
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Febrile to 39 C.", "Dry cough.", "Follow up in two weeks."]
    assert "3 sentences" in capsys.readouterr().out
    assert main(["predict", "--input", str(tmp_path / "none.txt"), "--out", str(out), "--model", str(tmp_path)]) == 2

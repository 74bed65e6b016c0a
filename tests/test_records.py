import json
from pathlib import Path

import pytest

from clinsynth.errors import DataError
from clinsynth.records import Provenance, Record, ResumableWriter, read_inputs, read_records, text_id
from clinsynth.taxonomy import load_taxonomy


def _line(**kw) -> str:
    base = {"id": "a", "text": "Confused.", "labels": ["COGNITIVE_IMPAIRMENT"], "source": "silver"}
    base.update(kw)
    return json.dumps(base)


def test_records_round_trip_with_provenance(tmp_path: Path):
    path = tmp_path / "r.jsonl"
    rec = Record(
        id="x",
        text="MMSE 21/30.",
        labels=["COGNITIVE_TESTING"],
        source="silver",
        note_id="mts-1",
        provenance=Provenance(lm="local/q", program="p", program_sha256="ab", seed=3),
    )
    path.write_text(json.dumps(rec.to_dict()) + "\n")
    (back,) = read_records(path, load_taxonomy())
    assert back == rec
    assert back.provenance.created_at


@pytest.mark.parametrize(
    "line, where",
    [
        (_line(labels=["MEMORY"]), ":2: field 'labels': unknown label(s) ['MEMORY']"),
        (_line(text="  "), ":2: field 'text': empty text"),
        (_line(source="platinum"), ":2: field 'source'"),
        (json.dumps({"id": "b", "labels": []}), ":2: field 'text': missing"),
        ("{not json", ":2: invalid JSON"),
    ],
)
def test_bad_records_name_file_line_and_field(tmp_path: Path, line: str, where: str):
    path = tmp_path / "bad.jsonl"
    path.write_text(_line(id="ok") + "\n" + line + "\n")
    with pytest.raises(DataError) as err:
        read_records(path, load_taxonomy())
    assert f"{path}{where}" in str(err.value)


def test_duplicate_ids_are_an_error(tmp_path: Path):
    path = tmp_path / "dup.jsonl"
    path.write_text(_line() + "\n" + _line() + "\n")
    with pytest.raises(DataError, match=r"dup.jsonl:2: field 'id': duplicate id 'a' \(first on line 1\)"):
        read_records(path)


def test_inputs_from_jsonl_csv_and_txt(tmp_path: Path):
    (tmp_path / "in.jsonl").write_text('{"id": "s1", "text": "He is confused."}\n{"text": "No fever."}\n')
    (tmp_path / "in.csv").write_text('id,text\n,"She wanders, at night."\nk,Alert.\n')
    (tmp_path / "in.txt").write_text("He is confused.\n\nNo fever.\n")
    jsonl = read_inputs(tmp_path / "in.jsonl")
    assert [(i.id, i.text) for i in jsonl] == [("s1", "He is confused."), (text_id("No fever."), "No fever.")]
    csv_items = read_inputs(tmp_path / "in.csv")
    assert [i.text for i in csv_items] == ["She wanders, at night.", "Alert."] and csv_items[1].id == "k"
    assert [i.id for i in read_inputs(tmp_path / "in.txt")] == [text_id("He is confused."), text_id("No fever.")]


def test_bad_inputs_name_file_line_and_field(tmp_path: Path):
    (tmp_path / "a.csv").write_text("sentence\nhello\n")
    with pytest.raises(DataError, match=r"a.csv:1: field 'text': CSV needs a 'text' column"):
        read_inputs(tmp_path / "a.csv")
    (tmp_path / "b.jsonl").write_text('{"text": "ok"}\n{"id": "2"}\n')
    with pytest.raises(DataError, match=r"b.jsonl:2: field 'text': missing"):
        read_inputs(tmp_path / "b.jsonl")
    (tmp_path / "c.docx").write_text("x")
    with pytest.raises(DataError, match="unsupported input type"):
        read_inputs(tmp_path / "c.docx")


def test_writer_resumes_skips_done_ids_and_repairs_a_partial_line(tmp_path: Path):
    path = tmp_path / "out.jsonl"
    with ResumableWriter(path) as w:
        w.write(Record(id="1", text="t1", labels=[], source="silver"))
        w.write(Record(id="2", text="t2", labels=[], source="silver"))
    with path.open("a") as fh:  # a writer killed mid-line
        fh.write('{"id": "3", "text": "t')
    with ResumableWriter(path) as w:
        assert w.done == {"1", "2"}
        w.write(Record(id="2", text="t2", labels=[], source="silver"))
        w.write(Record(id="3", text="t3", labels=[], source="silver"))
    assert [r.id for r in read_records(path)] == ["1", "2", "3"]

import json
from pathlib import Path

import pytest

from clinsynth.data.records import (
    MAX_SENTENCE_CHARS,
    Provenance,
    Record,
    ResumableWriter,
    iter_jsonl,
    read_inputs,
    read_records,
)
from clinsynth.errors import ClinsynthError, DataError
from tests.conftest import ad_taxonomy


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
    (back,) = read_records(path, ad_taxonomy())
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
        read_records(path, ad_taxonomy())
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
    assert [(i.id, i.text) for i in jsonl] == [("s1", "He is confused."), ("L2", "No fever.")]
    csv_items = read_inputs(tmp_path / "in.csv")
    assert [i.text for i in csv_items] == ["She wanders, at night.", "Alert."]
    assert [i.id for i in csv_items] == ["L2", "k"]
    assert [i.id for i in read_inputs(tmp_path / "in.txt")] == ["L1", "L3"]


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


def test_a_byte_order_mark_is_dropped_from_csv_header_and_txt_first_line(tmp_path: Path):
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbftext,id\nCough.,c1\n")
    assert [(i.id, i.text) for i in read_inputs(tmp_path / "bom.csv")] == [("c1", "Cough.")]
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbfCough.\nFever.\n")
    assert [i.text for i in read_inputs(tmp_path / "bom.txt")] == ["Cough.", "Fever."]
    (tmp_path / "bom.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "Cough."}\n')
    assert [i.text for i in read_inputs(tmp_path / "bom.jsonl")] == ["Cough."]


@pytest.mark.parametrize(
    "name, data",
    [
        ("bad.txt", b"Cough.\nFever \xff\xfe here.\n"),
        ("bad.jsonl", b'{"text": "Cough."}\n{"text": "Fever \xe9."}\n'),  # Latin-1, not UTF-8
        ("bad.csv", b"id,text\na,Cough.\nb,Fever \xe9.\n"),
    ],
)
def test_invalid_utf8_is_a_data_error_naming_file_and_line(tmp_path: Path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    where = f"{path}:{3 if name.endswith('.csv') else 2}: not valid UTF-8"
    with pytest.raises(DataError) as err:
        read_inputs(path)
    assert where in str(err.value)
    if name.endswith(".jsonl"):
        with pytest.raises(DataError, match="bad.jsonl:2: not valid UTF-8"):
            list(iter_jsonl(path))


def test_a_directory_as_input_is_a_data_error(tmp_path: Path):
    (tmp_path / "notes.txt").mkdir()
    with pytest.raises(DataError, match="notes.txt: is a directory, expected a file"):
        read_inputs(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="is a directory"):
        list(iter_jsonl(tmp_path))


@pytest.mark.parametrize(
    "name, body", [("e.txt", "\n  \n"), ("e.jsonl", "\n"), ("e.csv", "id,text\n"), ("e.csv", ""), ("e.txt", "")]
)
def test_an_input_without_sentences_is_a_data_error(tmp_path: Path, name: str, body: str):
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError, match=f"{name}: no sentences in input"):
        read_inputs(tmp_path / name)


def test_items_without_an_id_are_numbered_by_line_so_sentences_may_repeat(tmp_path: Path):
    (tmp_path / "r.txt").write_text("Cough.\n\nCough.\nFever.\n")
    assert [(i.id, i.text) for i in read_inputs(tmp_path / "r.txt")] == [
        ("L1", "Cough."),
        ("L3", "Cough."),
        ("L4", "Fever."),
    ]
    (tmp_path / "r.jsonl").write_text('{"text": "Cough."}\n{"text": "Cough."}\n')
    assert [i.id for i in read_inputs(tmp_path / "r.jsonl")] == ["L1", "L2"]
    # CSV: the physical line a row starts on, past a quoted field over two lines and a blank line.
    (tmp_path / "r.csv").write_text('text\n"Cough,\nat night."\n\nCough.\nCough.\n')
    items = read_inputs(tmp_path / "r.csv")
    assert [(i.id, i.text) for i in items] == [("L2", "Cough,\nat night."), ("L5", "Cough."), ("L6", "Cough.")]


def test_a_repeated_explicit_id_names_both_lines(tmp_path: Path):
    (tmp_path / "d.jsonl").write_text('{"id": "a", "text": "Cough."}\n{"text": "x"}\n{"id": "a", "text": "Fever."}\n')
    with pytest.raises(DataError, match=r"d.jsonl:3: field 'id': duplicate id 'a' \(first on line 1\)"):
        read_inputs(tmp_path / "d.jsonl")
    (tmp_path / "d.csv").write_text("id,text\nk,Cough.\nk,Fever.\n")
    with pytest.raises(DataError, match=r"d.csv:3: field 'id': duplicate id 'k' \(first on line 2\)"):
        read_inputs(tmp_path / "d.csv")
    # An explicit id that equals another item's line id is caught too.
    (tmp_path / "c.jsonl").write_text('{"id": "L2", "text": "Cough."}\n{"text": "Fever."}\n')
    with pytest.raises(DataError, match=r"c.jsonl:2: field 'id': duplicate id 'L2' \(first on line 1"):
        read_inputs(tmp_path / "c.jsonl")


def test_a_long_item_is_truncated_with_one_warning_naming_file_and_line(tmp_path: Path, caplog):
    long = "word " * (MAX_SENTENCE_CHARS // 5 + 100)
    (tmp_path / "long.txt").write_text(f"Cough.\n{long}\nFever.\n")
    with caplog.at_level("WARNING", logger="clinsynth.data.records"):
        items = read_inputs(tmp_path / "long.txt")
    assert [len(i.text) for i in items] == [6, MAX_SENTENCE_CHARS, 6]
    assert items[1].text == long.strip()[:MAX_SENTENCE_CHARS]
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert f"{tmp_path / 'long.txt'}:2:" in warnings[0] and "longer than MAX_SENTENCE_CHARS" in warnings[0]


def test_a_second_writer_on_the_same_output_is_refused_while_the_first_holds_the_lock(tmp_path: Path):
    path = tmp_path / "new" / "dir" / "out.jsonl"  # parent folders are created
    with ResumableWriter(path) as first:
        first.write(Record(id="1", text="t1", labels=[], source="silver"))
        with pytest.raises(ClinsynthError) as err:
            ResumableWriter(path)
        assert f"{path} is being written by another run (lock {path}.lock held)" in str(err.value)
        first.write(Record(id="2", text="t2", labels=[], source="silver"))
    with ResumableWriter(path) as again:  # released on close
        assert again.done == {"1", "2"}

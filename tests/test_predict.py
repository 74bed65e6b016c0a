"""``clinsynth predict`` input readers and output rows, with a tiny trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clinsynth.data.records import MAX_SENTENCE_CHARS, read_inputs
from clinsynth.errors import ClinsynthError, DataError
from clinsynth.model.predict import count_sentences, predict_file, read_sentences

NOTE = """HISTORY OF PRESENT ILLNESS:  Febrile to 39 C overnight. Productive cough.

PLAN:  Follow up in two weeks."""


def test_txt_lines_keep_distinct_ids_even_when_repeated(tmp_path: Path):
    path = tmp_path / "s.txt"
    path.write_text("Cough.\n\nCough.\nFever.\n")
    sentences = read_sentences(path)
    assert [s.id for s in sentences] == ["L1", "L3", "L4"]  # the ids programs.label gives (read_inputs)
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
    from clinsynth.app.cli import main

    model.save(tmp_path / "model")
    (tmp_path / "in.txt").write_text("Febrile to 39 C.\nDry cough.\nFollow up in two weeks.\n")
    out = tmp_path / "pred.jsonl"
    assert (
        main(["predict", "--input", str(tmp_path / "in.txt"), "--out", str(out), "--model", str(tmp_path / "model")])
        == 0
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["Febrile to 39 C.", "Dry cough.", "Follow up in two weeks."]
    printed = capsys.readouterr().out
    assert "3 sentences" in printed and "LLM check" not in printed  # this model's card asks for no check
    assert main(["predict", "--input", str(tmp_path / "none.txt"), "--out", str(out), "--model", str(tmp_path)]) == 2
    # One sentence from the command line: its labels printed, the same as the file run gave it.
    capsys.readouterr()
    assert main(["predict", "--text", "Febrile to 39 C.", "--model", str(tmp_path / "model")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith(f"{', '.join(rows[0]['labels']) or 'NONE'}\tFebrile to 39 C.")
    assert main(["predict", "--model", str(tmp_path / "model")]) == 2  # neither --text nor --input/--out


def test_long_lines_are_clipped_as_label_clips_them_and_notes_per_sentence(tmp_path: Path, caplog):
    long = "Cough " * (MAX_SENTENCE_CHARS // 6 + 50)
    (tmp_path / "s.txt").write_text(f"Fever.\n{long}\n")
    with caplog.at_level("WARNING", logger="clinsynth.data.records"):
        sentences = read_sentences(tmp_path / "s.txt")
    assert [(s.id, s.text) for s in sentences] == [(i.id, i.text) for i in read_inputs(tmp_path / "s.txt")]
    assert len(sentences[1].text) == MAX_SENTENCE_CHARS
    assert any("s.txt:2:" in r.getMessage() and "MAX_SENTENCE_CHARS" in r.getMessage() for r in caplog.records)
    # A note is longer than a sentence by nature: it is split first, and only a long sentence is cut.
    note = "HISTORY OF PRESENT ILLNESS:  " + "Productive cough at night. " * 150 + "Word " + "word " * 500
    (tmp_path / "n.jsonl").write_text(json.dumps({"id": "n1", "text": note}) + "\n")
    caplog.clear()
    with caplog.at_level("WARNING", logger="clinsynth.data.records"):
        sentences = read_sentences(tmp_path / "n.jsonl", notes=True)
    assert len(note) > MAX_SENTENCE_CHARS and len(sentences) == 151
    assert [len(s.text) for s in sentences[-2:]] == [len("Productive cough at night."), MAX_SENTENCE_CHARS]
    assert [r.getMessage().split(": ")[0] for r in caplog.records] == [f"{tmp_path / 'n.jsonl'}:1"]
    # predict's counting pass reads it all too, but only the scoring pass warns: once per long sentence.
    caplog.clear()
    with caplog.at_level("WARNING", logger="clinsynth.data.records"):
        assert count_sentences(tmp_path / "n.jsonl", notes=True) == 151 and count_sentences(tmp_path / "s.txt") == 2
    assert caplog.records == []


def test_a_txt_note_with_a_byte_order_mark_and_crlf_reads_like_a_plain_one(tmp_path: Path):
    (tmp_path / "plain.txt").write_text(NOTE)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + NOTE.replace("\n", "\r\n").encode())
    plain = read_sentences(tmp_path / "plain.txt", notes=True)
    bom = read_sentences(tmp_path / "bom.txt", notes=True)
    assert [(s.text, s.section) for s in bom] == [(s.text, s.section) for s in plain]
    assert bom[0].section == "HISTORY OF PRESENT ILLNESS"
    (tmp_path / "latin1.txt").write_bytes(b"Cough.\nFi\xe8vre.\n")
    with pytest.raises(DataError, match="latin1.txt:2: not valid UTF-8"):
        read_sentences(tmp_path / "latin1.txt", notes=True)


@pytest.mark.parametrize(
    "name, body, notes",
    [("empty.txt", "\n  \n", False), ("empty.jsonl", "", True), ("headers.jsonl", '{"text": "PLAN:"}\n', True)],
)
def test_an_input_without_sentences_leaves_an_existing_output_byte_identical(
    model, tmp_path: Path, name: str, body: str, notes: bool
):
    out = tmp_path / "pred.jsonl"
    out.write_bytes(b'{"id": "old"}\r\n')
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError, match=f"{name}: no sentences in input"):
        predict_file(model, tmp_path / name, out, notes=notes)
    assert out.read_bytes() == b'{"id": "old"}\r\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "pred.jsonl"])


class _RunsAnotherPrediction:
    """A classifier that, while its own output is half written, lets another run write the same file."""

    def __init__(self, model: Any, other_input: Path, out: Path) -> None:
        self.model, self.other_input, self.out = model, other_input, out
        self.other: dict[str, Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def scores(self, texts: list[str]) -> Any:
        if self.other is None:
            try:
                self.other = predict_file(self.model, self.other_input, self.out)
            except ClinsynthError as exc:
                self.other = {"refused": str(exc)}
        return self.model.scores(texts)


def test_a_second_run_on_one_output_is_stopped_by_the_lock(model, tmp_path: Path):
    """Issue 26 row 10: two predict runs on one --out: the second stops at once, naming the lock."""
    (tmp_path / "a.txt").write_text("Febrile to 39 C.\nDry cough.\n")
    (tmp_path / "b.txt").write_text("Follow up in two weeks.\n")
    out = tmp_path / "new" / "pred.jsonl"  # parent folders are created
    first = _RunsAnotherPrediction(model, tmp_path / "b.txt", out)
    result = predict_file(first, tmp_path / "a.txt", out)
    assert first.other is not None and "pred.jsonl.lock" in first.other["refused"]
    assert result["sentences"] == 2
    # The first run's output is whole; no temporary or lock file is left behind.
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["Febrile to 39 C.", "Dry cough."]
    assert [p.name for p in out.parent.iterdir()] == ["pred.jsonl"]


class _DiesAfter:
    """A classifier whose process dies (here: raises) while scoring batch ``n``, as kill -9 would stop it."""

    def __init__(self, model: Any, n: int) -> None:
        self.model, self.n, self.calls = model, n, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def scores(self, texts: list[str]) -> Any:
        self.calls += 1
        if self.calls == self.n:
            raise SystemExit("killed")
        return self.model.scores(texts)


def test_a_killed_predict_resumes_after_its_last_whole_row_and_a_changed_input_starts_over(model, tmp_path: Path):
    """Issue 26 row 9: predict streams into <out>.part and resumes like label; out is whole or absent."""
    from clinsynth.model.predict import BATCH

    src = tmp_path / "big.txt"
    src.write_text("".join(f"Febrile to 39 C on day {i}.\n" if i % 3 else f"Dry cough, day {i}.\n"
                           for i in range(2 * BATCH + 40)))  # fmt: skip
    clean = predict_file(model, src, tmp_path / "clean.jsonl")
    out = tmp_path / "pred.jsonl"
    with pytest.raises(SystemExit):
        predict_file(_DiesAfter(model, 3), src, out)  # two batches written, the third in flight
    part = out.with_name("pred.jsonl.part")
    assert not out.exists() and len(part.read_text().splitlines()) == 2 * BATCH
    with part.open("a") as fh:
        fh.write('{"id": "L5')  # a row torn by the kill

    again = predict_file(model, src, out)

    assert again["resumed_after"] == 2 * BATCH and again["sentences"] == clean["sentences"]
    assert out.read_text() == (tmp_path / "clean.jsonl").read_text()  # nothing lost, nothing twice
    assert again["label_counts"] == clean["label_counts"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("pred")) == ["pred.jsonl"]
    # A part file of another input is not resumed: the new input is scored from its start.
    with pytest.raises(SystemExit):
        predict_file(_DiesAfter(model, 2), src, out)
    src.write_text("Dry cough.\n" * (BATCH + 3))
    assert predict_file(model, src, out)["resumed_after"] == 0
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["Dry cough."] * (BATCH + 3)


def test_a_note_keeps_e_g_and_i_e_inside_their_sentence(tmp_path: Path):
    """Issue 27: "(e.g., yelling at the TV)" was split in two by the corpus's line-break-comma rule."""
    note = "She is irritable (e.g., yelling at the TV) and withdrawn. He forgets, i.e., names.\n"
    (tmp_path / "n.txt").write_text(note)
    assert [s.text for s in read_sentences(tmp_path / "n.txt", notes=True)] == [
        "She is irritable (e.g., yelling at the TV) and withdrawn.", "He forgets, i.e., names."]

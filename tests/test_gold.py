import json
from pathlib import Path

import pytest

from clinsynth.data.corpus import iter_sentences, note_sentences, read_notes
from clinsynth.data.gold import SPLITS, WHOLE_NOTES, WHOLE_NOTES_FILES, held_out_notes, load_gold, load_whole_notes
from clinsynth.data.task import load_task
from clinsynth.errors import DataError
from tests.conftest import ad_task, ad_taxonomy


@pytest.fixture(scope="module")
def gold():
    return ad_task().gold()


def test_committed_gold_validates_and_no_note_crosses_splits(gold):
    taxonomy = ad_taxonomy()
    notes = {split: {r.note_id for r in records} for split, records in gold.items()}
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not notes[a] & notes[b], f"notes in both {a} and {b}"
    for records in gold.values():
        for rec in records:
            assert not taxonomy.unknown_labels(rec.labels)
            assert rec.labels == taxonomy.canonical(rec.labels)


def test_gold_size_positives_and_categories_in_train_and_dev(gold):
    all_records = [r for records in gold.values() for r in records]
    assert len(all_records) >= 700
    assert sum(1 for r in all_records if r.labels) >= 300
    for split in ("train", "dev"):
        present = {label for r in gold[split] for label in r.labels}
        assert present == set(ad_taxonomy().names), f"{split} lacks {set(ad_taxonomy().names) - present}"


def test_gold_ids_and_texts_match_the_corpus_reader(gold):
    corpus = {s.id: s for s in iter_sentences(ad_task().corpus)}
    for records in gold.values():
        for rec in records:
            sentence = corpus[rec.id]
            assert (sentence.text, sentence.note_id) == (rec.text, rec.note_id)


def test_held_out_notes_are_dev_and_test_notes(gold):
    expected = {r.note_id for split in ("dev", "test") for r in gold[split]}
    assert held_out_notes(ad_task().gold_dir) == expected
    assert not expected & {r.note_id for r in gold["train"]}


def _write_gold(tmp: Path, rows: dict[str, list[dict]]) -> Path:
    for split in SPLITS:
        lines = [json.dumps({"source": "gold", "split": split, "labels": [], **row}) for row in rows.get(split, [])]
        (tmp / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp


@pytest.mark.parametrize(
    "rows, where",
    [
        ({"dev": [{"id": "a", "text": "x", "note_id": "n1", "labels": ["MEMORY"]}]}, "dev.jsonl:1: field 'labels'"),
        (
            {"train": [{"id": "a", "text": "x", "note_id": "n1"}, {"id": "a", "text": "y", "note_id": "n1"}]},
            "train.jsonl:2: field 'id': duplicate id 'a'",
        ),
        ({"test": [{"id": "a", "text": " ", "note_id": "n1"}]}, "test.jsonl:1: field 'text': empty text"),
        (
            {"train": [{"id": "a", "text": "x", "note_id": "n1"}], "test": [{"id": "b", "text": "y", "note_id": "n1"}]},
            "test.jsonl:1: field 'note_id': note 'n1' is in two splits",
        ),
        ({"dev": [{"id": "a", "text": "x"}]}, "dev.jsonl:1: field 'note_id': missing"),
        ({"dev": [{"id": "a", "text": "x", "note_id": "n", "split": "test"}]}, "dev.jsonl:1: field 'split'"),
    ],
)
def test_bad_gold_is_a_clear_error_with_file_and_line(tmp_path: Path, rows: dict, where: str):
    with pytest.raises(DataError) as err:
        load_gold(_write_gold(tmp_path, rows), ad_taxonomy())
    assert where in str(err.value)


def test_data_card_reports_counts_and_kappa():
    card = (ad_task().gold_dir / "README.md").read_text()
    agreement = json.loads((ad_task().gold_dir / "agreement.json").read_text())
    assert f"{agreement['binary_kappa']:.3f}" in card
    for name in ad_taxonomy().names:
        assert name in card


@pytest.mark.parametrize("split", ["test", "dev"])
@pytest.mark.parametrize("task_dir", ["tasks/ad_signs", "tasks/sdoh"])
def test_whole_notes_hold_every_sentence_of_their_notes_and_agree_with_their_split(task_dir: str, split: str):
    task = load_task(Path(__file__).resolve().parents[1] / task_dir)
    gold = task.gold()
    whole = task.whole_notes(gold[split], split)
    notes = {r.note_id for r in whole}
    assert len(notes) >= 5 and len(whole) >= 300
    assert notes <= {r.note_id for r in gold[split]}  # held out: never trained on
    assert {r.split for r in whole} == {split}
    corpus = {n.note_id: n for n in read_notes(task.corpus) if n.note_id in notes}
    for note_id in notes:  # every sentence, in the corpus reader's ids and text
        expected = [(s.id, s.text) for s in note_sentences(corpus[note_id])]
        assert [(r.id, r.text) for r in whole if r.note_id == note_id] == expected
    # Whole notes are mostly NONE, unlike the enriched test set, and say a model annotated them.
    none_share = sum(1 for r in whole if not r.labels) / len(whole)
    assert none_share > 0.65 and none_share > sum(1 for r in gold[split] if not r.labels) / len(gold[split])
    assert {r.provenance.attributes["annotator_kind"] for r in whole} == {"model"}


@pytest.mark.parametrize(
    "row, where",
    [
        ({"id": "x1", "text": "x", "note_id": "n-train"}, "field 'note_id': note 'n-train'"),
        ({"id": "t1", "text": "y", "note_id": "n-test", "labels": ["DIAGNOSIS"]}, "field 'labels'"),
    ],
)
def test_a_bad_whole_note_record_is_an_error_naming_file_line_and_field(tmp_path: Path, row: dict, where: str):
    gold_dir = _write_gold(tmp_path, {"train": [{"id": "x0", "text": "x", "note_id": "n-train"}],
                                      "test": [{"id": "t1", "text": "y", "note_id": "n-test"}]})  # fmt: skip
    ok = {"id": "t2", "text": "z", "note_id": "n-test", "source": "gold", "split": "test", "labels": []}
    (gold_dir / WHOLE_NOTES).write_text(json.dumps(ok) + "\n" + json.dumps({**ok, **row}) + "\n")
    with pytest.raises(DataError) as err:
        load_whole_notes(gold_dir, ad_taxonomy(), load_gold(gold_dir, ad_taxonomy())["test"])
    assert f"{WHOLE_NOTES}:2: {where}" in str(err.value)


def test_whole_notes_of_a_split_are_checked_against_that_split(tmp_path: Path):
    gold_dir = _write_gold(tmp_path, {"train": [{"id": "x0", "text": "x", "note_id": "n-train"}],
                                      "dev": [{"id": "d1", "text": "y", "note_id": "n-dev"}]})  # fmt: skip
    row = {"id": "d2", "text": "z", "note_id": "n-dev", "source": "gold", "split": "test", "labels": []}
    (gold_dir / WHOLE_NOTES_FILES["dev"]).write_text(json.dumps(row) + "\n")
    dev = load_gold(gold_dir, ad_taxonomy(), ("train", "dev"))["dev"]
    with pytest.raises(DataError, match=f"{WHOLE_NOTES_FILES['dev']}:1: field 'note_id'.*not a gold dev note"):
        load_whole_notes(gold_dir, ad_taxonomy(), dev, "dev")
    (gold_dir / WHOLE_NOTES_FILES["dev"]).write_text(json.dumps({**row, "split": "dev"}) + "\n")
    assert [r.id for r in load_whole_notes(gold_dir, ad_taxonomy(), dev, "dev")] == ["d2"]


def test_whole_training_notes_add_their_other_sentences_and_cross_validation_adds_the_dev_ones(tmp_path: Path):
    from clinsynth.data.mixes import WHOLE_NOTES_PART, MixSources, load_mix, whole_notes_part

    gold_dir = _write_gold(tmp_path, {"train": [{"id": "t1", "text": "Forgetful.", "note_id": "n-train",
                                                  "labels": ["COGNITIVE_IMPAIRMENT"]}],
                                      "dev": [{"id": "d1", "text": "y", "note_id": "n-dev"}]})  # fmt: skip
    sources = MixSources(gold_dir=gold_dir, silver=tmp_path / "silver.jsonl", bronze=tmp_path / "bronze.jsonl")
    with pytest.raises(DataError, match=f"{WHOLE_NOTES_FILES['train']}: no whole training notes here"):
        load_mix(f"gold+{WHOLE_NOTES_PART}", ad_taxonomy(), sources)

    def rows(split: str, note: str, ids: list[str]) -> str:
        return "".join(json.dumps({"id": i, "text": f"sentence {i}", "note_id": note, "source": "gold",
                                   "split": split, "labels": []}) + "\n" for i in ids)  # fmt: skip

    # t1 is in train.jsonl already (with its own labels there, which the whole note must repeat)
    (gold_dir / WHOLE_NOTES_FILES["train"]).write_text(
        json.dumps({"id": "t1", "text": "Forgetful.", "note_id": "n-train", "source": "gold", "split": "train",
                    "labels": ["COGNITIVE_IMPAIRMENT"]}) + "\n" + rows("train", "n-train", ["t2", "t3"]))  # fmt: skip
    (gold_dir / WHOLE_NOTES_FILES["dev"]).write_text(rows("dev", "n-dev", ["d1", "d2"]))
    mix = load_mix(f"gold+{WHOLE_NOTES_PART}", ad_taxonomy(), sources)
    assert [r.id for r in mix] == ["t1", "t2", "t3"]  # a saved model never trains on the dev notes
    assert [r.id for r in whole_notes_part(gold_dir, ad_taxonomy(), ("train", "dev"))] == ["t2", "t3", "d2"]


def test_test_sentences_a_model_may_have_trained_on_are_left_out_of_the_held_out_sets(tmp_path: Path):
    from clinsynth.data.gold import held_out_test_sets

    gold_dir = _write_gold(tmp_path, {
        "train": [{"id": "t1", "text": "Denied.", "note_id": "n-train"}],
        "dev": [{"id": "d1", "text": "dev text", "note_id": "n-dev"}],
        "test": [{"id": "s1", "text": "denied. ", "note_id": "n-test"}, {"id": "s2", "text": "Forgetful.",
                  "note_id": "n-test", "labels": ["COGNITIVE_IMPAIRMENT"]},
                 {"id": "s3", "text": "Plain words.", "note_id": "n-test"}]})  # fmt: skip

    def rows(split: str, note: str, texts: dict[str, str]) -> str:
        return "".join(json.dumps({"id": i, "text": t, "note_id": note, "source": "gold", "split": split,
                                   "labels": []}) + "\n" for i, t in texts.items())  # fmt: skip

    (gold_dir / WHOLE_NOTES_FILES["train"]).write_text(
        json.dumps({"id": "t1", "text": "Denied.", "note_id": "n-train", "source": "gold", "split": "train",
                    "labels": []}) + "\n" + rows("train", "n-train", {"t2": "Plain words."}))  # fmt: skip
    gold = load_gold(gold_dir, ad_taxonomy())
    sets = held_out_test_sets(gold_dir, ad_taxonomy(), gold)
    # s1 repeats a train sentence (case and spaces aside), s3 a sentence of a whole train note.
    assert [r.id for r in sets["test"]] == ["s2"] and sets["whole_notes"] == []

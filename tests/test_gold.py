import json
from pathlib import Path

import pytest

from clinsynth.corpus import iter_sentences
from clinsynth.errors import DataError
from clinsynth.gold import SPLITS, held_out_notes, load_gold
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

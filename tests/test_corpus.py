import csv
import gzip
from pathlib import Path

import pytest

from clinsynth.data.corpus import clean_and_split, fix_mojibake, note_sentences, read_notes
from clinsynth.errors import DataError
from tests.conftest import ad_task

# Real MTSamples snippets, one per quirk.
RUN_IN_HEADERS = (
    "SUBJECTIVE:,  This 23-year-old white female presents with complaint of allergies.  She used to have "
    "allergies when she lived in Seattle but she thinks they are worse here.,MEDICATIONS: , Her only medication "
    "currently is Ortho Tri-Cyclen and the Allegra.,ALLERGIES: , She has no known medicine allergies."
)
COMMA_LINE_BREAKS = (
    "EXAM:, BP 98/80 mmHg and pulse 64 BPM (supine). Appeared fatigued.,CN: unremarkable.,"
    "Motor and Sensory exam: unremarkable.,The rest of the neurologic and general physical exam was unremarkable."
)
MOJIBAKE = "she was uncomfortable after todayâ€™s instillation which she did choose to take."
LIST_ITEMS = "PLAN:,1.  She will try Zyrtec instead of Allegra again.,2.  Samples of Nasonex two sprays were given."


def test_run_in_headers_become_sections_not_text():
    pairs = clean_and_split(RUN_IN_HEADERS)
    assert pairs[0] == ("SUBJECTIVE", "This 23-year-old white female presents with complaint of allergies.")
    assert ("MEDICATIONS", "Her only medication currently is Ortho Tri-Cyclen and the Allegra.") in pairs
    assert ("ALLERGIES", "She has no known medicine allergies.") in pairs
    assert all(":," not in text and not text.startswith(",") for _, text in pairs)


def test_commas_standing_for_line_breaks_split_lines():
    texts = [t for _, t in clean_and_split(COMMA_LINE_BREAKS)]
    assert texts == [
        "BP 98/80 mmHg and pulse 64 BPM (supine).",
        "Appeared fatigued.",
        "CN: unremarkable.",
        "Motor and Sensory exam: unremarkable.",
        "The rest of the neurologic and general physical exam was unremarkable.",
    ]


def test_mojibake_is_repaired():
    assert fix_mojibake(MOJIBAKE) == "she was uncomfortable after today's instillation which she did choose to take."
    assert fix_mojibake("temperature 38Â°C, â€œquotedâ€\x9d") == 'temperature 38°C, "quoted"'


def test_list_numbers_are_dropped_and_abbreviations_do_not_split():
    texts = [t for _, t in clean_and_split(LIST_ITEMS)]
    assert texts == ["She will try Zyrtec instead of Allegra again.", "Samples of Nasonex two sprays were given."]
    texts = [t for _, t in clean_and_split("HPI:, Seen by Dr. Smith on Monday. She is doing well.")]
    assert texts == ["Seen by Dr. Smith on Monday.", "She is doing well."]


def _write_corpus(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["id", "description", "medical_specialty", "sample_name", "transcription", "keywords"]
        )
        writer.writeheader()
        for row in rows:
            writer.writerow({"description": "", "sample_name": "", "keywords": "", **row})
    return path


def test_notes_are_deduplicated_by_transcription_with_stable_ids(tmp_path: Path):
    path = _write_corpus(
        tmp_path / "c.csv.gz",
        [
            {"id": "7", "medical_specialty": " Neurology", "transcription": RUN_IN_HEADERS},
            {"id": "3", "medical_specialty": " Consult - History and Phy.", "transcription": RUN_IN_HEADERS},
            {"id": "5", "medical_specialty": " Surgery", "transcription": LIST_ITEMS},
            {"id": "9", "medical_specialty": " Surgery", "transcription": "  "},
        ],
    )
    notes = read_notes(path)
    assert [n.note_id for n in notes] == ["mts-3", "mts-5"]
    assert notes[0].specialties == ("Neurology", "Consult - History and Phy.")
    first = [s.id for s in note_sentences(notes[0])]
    assert first[:2] == ["mts-3-s0", "mts-3-s1"]
    assert first == [s.id for s in note_sentences(read_notes(path)[0])]


def test_missing_corpus_file_and_column_are_clear_errors(tmp_path: Path):
    with pytest.raises(DataError, match="missing.csv.gz: corpus file not found"):
        read_notes(tmp_path / "missing.csv.gz")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text\n1,hello\n")
    with pytest.raises(DataError, match=r"bad.csv:1: missing column\(s\) medical_specialty, transcription"):
        read_notes(bad)


def test_bundled_corpus_reads_into_deduplicated_notes():
    notes = read_notes(ad_task().corpus)
    assert 2200 < len(notes) < 2400  # ~2,300 unique transcriptions of 4,929 rows
    assert len({n.note_id for n in notes}) == len(notes)
    sentences = note_sentences(notes[0])
    assert sentences and all(s.text.strip() for s in sentences)

"""A tiny labelled dataset for the two-category test taxonomy (FEVER, COUGH), split by note."""

from __future__ import annotations

from pathlib import Path

from clinsynth.data.records import Record, write_records

FEVER = [
    "Temperature 39.2 C this morning.",
    "She has been febrile overnight.",
    "Febrile to 38.9 with chills.",
    "He spiked a fever of 102 F.",
    "Fever and rigors since yesterday.",
    "Running a high temperature for two days.",
    "Febrile again this evening at 39 C.",
    "Persistent fever despite acetaminophen.",
]
COUGH = [
    "Productive cough with green sputum.",
    "He coughs all night.",
    "Dry hacking cough for a week.",
    "Coughing fits wake her at night.",
    "Persistent cough after the cold.",
    "She reports a barking cough.",
    "Cough productive of yellow phlegm.",
    "Frequent coughing during meals.",
]
BOTH = ["Fever and productive cough since Monday.", "Febrile with a wet cough."]
NONE = [
    "Abdomen soft and nontender.",
    "Follow up in two weeks.",
    "Skin is warm and dry.",
    "No known drug allergies.",
    "The incision was closed with staples.",
    "Denies cough.",
    "Bowel sounds are normal.",
    "Patient is a retired teacher.",
]


def records(split: str) -> list[Record]:
    """Deterministic split: every third example of each group goes to dev, the next to test."""
    rows: list[tuple[str, list[str]]] = []
    for texts, labels in ((FEVER, ["FEVER"]), (COUGH, ["COUGH"]), (BOTH, ["FEVER", "COUGH"]), (NONE, [])):
        rows.extend((t, labels) for t in texts)
    out = []
    for i, (text, labels) in enumerate(rows):
        if ("train", "train", "dev", "test")[i % 4] == split:
            out.append(Record(f"{split}-{i}", text, list(labels), "gold", note_id=f"n{i}", split=split))
    return out


def write_gold(gold_dir: Path) -> Path:
    gold_dir.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        write_records(gold_dir / f"{split}.jsonl", records(split))
    return gold_dir

"""Build a gold folder's whole notes: every sentence of some whole gold test (dev, train) notes.

Inputs (in ``WORK``): ``to_annotate.jsonl`` (the notes' sentences not already in the split's file),
two independent passes ``pass_a.jsonl`` / ``pass_b.jsonl`` and ``adjudication.jsonl`` (the
label of each sentence the passes disagree on, with the reason). Sentences already in the
split's file keep their labels there. The output is ``clinsynth.data.gold.WHOLE_NOTES_FILES[split]``.
Run from the project root:

    python tasks/ad_signs/gold/tools/build_whole_notes.py GOLD_DIR WORK_DIR [dev|train]

    GOLD_DIR           WORK_DIR (test notes; with ``dev``: the same folder's whole_dev_notes)
    tasks/ad_signs/gold  tasks/ad_signs/gold/work/whole_notes
    tasks/sdoh/gold      tasks/sdoh/annotation/whole_notes

The dev notes are the five with the most gold dev sentences (ties: the first in dev.jsonl);
the AD train notes (``tasks/ad_signs/gold/work/whole_train_notes``, split ``train``) the eight
with the most gold train sentences, each pass made by two annotators, one per half of the notes
(``pass_a.batch1.jsonl`` + ``pass_a.batch2.jsonl`` = ``pass_a.jsonl``). Later rounds draw notes at
random (``pick_whole_notes.py``): the SDoH train notes (``tasks/sdoh/annotation/whole_train_notes``)
and a second round of AD train notes (``tasks/ad_signs/gold/work/whole_train_notes_random``). A
round's notes replace their own rows in the output; the rows of other notes stay.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from clinsynth.data.corpus import note_sentences, read_notes
from clinsynth.data.gold import WHOLE_NOTES_FILES
from clinsynth.paths import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "data" / "corpus" / "mtsamples.csv.gz"
PROVENANCE = {
    "lm": "model: LLM agents as annotators (no person annotated)",
    "program": "whole-note annotation: two independent passes, disagreements adjudicated",
    "program_sha256": "",
    "created_at": "",
    "attributes": {"annotator_kind": "model"},
}


def read(path: Path) -> dict[str, dict]:
    return {obj["id"]: obj for obj in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def build(gold_dir: Path, work: Path, split: str = "test") -> tuple[int, int, int]:
    held_out = read(gold_dir / f"{split}.jsonl")
    sentences = read(work / "to_annotate.jsonl")
    a, b, adjudicated = read(work / "pass_a.jsonl"), read(work / "pass_b.jsonl"), read(work / "adjudication.jsonl")
    notes_wanted = list(dict.fromkeys(s["note_id"] for s in sentences.values()))
    notes = {n.note_id: n for n in read_notes(CORPUS) if n.note_id in notes_wanted}
    rows, agreed = [], 0
    for note_id in notes_wanted:
        for sentence in note_sentences(notes[note_id]):
            if sentence.id in held_out:
                labels = held_out[sentence.id]["labels"]
            elif sorted(a[sentence.id]["labels"]) == sorted(b[sentence.id]["labels"]):
                labels, agreed = a[sentence.id]["labels"], agreed + 1
            else:
                labels = adjudicated[sentence.id]["labels"]
            rows.append({"id": sentence.id, "text": sentence.text, "labels": sorted(labels), "source": "gold",
                         "note_id": note_id, "split": split, "provenance": PROVENANCE})  # fmt: skip
    out = gold_dir / WHOLE_NOTES_FILES[split]
    # Notes another work folder built stay, ahead of these: whole notes are added in rounds.
    kept = [r for r in read(out).values() if r["note_id"] not in notes_wanted] if out.exists() else []
    out.write_text("".join(json.dumps(r) + "\n" for r in kept + rows), encoding="utf-8")
    return len(rows), agreed, len(sentences) - agreed


if __name__ == "__main__":
    total, agreed, adjudicated = build(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
    print(f"{total} sentences: {agreed} new ones agreed by both passes, {adjudicated} adjudicated")

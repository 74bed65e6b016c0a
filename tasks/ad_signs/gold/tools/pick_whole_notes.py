"""Pick whole gold notes to annotate: N notes of a gold split drawn at random with a fixed seed.

Notes picked by how many gold sentences they hold (the first whole dev and train notes) are the
notes richest in the task's wording, so a whole-note view built on them overstates what a user
meets on an ordinary note. A random draw does not. Notes already kept whole are left out. Writes,
into WORK_DIR, ``to_annotate.jsonl`` (every sentence of the picked notes that the split's file
does not hold, with its section header) and ``batch<k>.jsonl`` (the same, cut by note into K
batches of about equal size, one per annotator of a pass). Run from the project root:

    python tasks/ad_signs/gold/tools/pick_whole_notes.py GOLD_DIR SPLIT N SEED K WORK_DIR

    tasks/sdoh/gold train 8 0 2 tasks/sdoh/annotation/whole_train_notes

The passes and adjudication then go through ``build_whole_notes.py`` (which appends to the
split's whole-notes file when it already exists).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from build_whole_notes import CORPUS, read  # the sibling tool (this folder is on sys.path when run)

from clinsynth.data.corpus import note_sentences, read_notes
from clinsynth.data.gold import WHOLE_NOTES_FILES


def pick(gold_dir: Path, split: str, n: int, seed: int, batches: int, work: Path) -> list[str]:
    in_split = read(gold_dir / f"{split}.jsonl")
    whole_file = gold_dir / WHOLE_NOTES_FILES[split]
    already_whole = {r["note_id"] for r in read(whole_file).values()} if whole_file.exists() else set()
    # Sorted before the draw, so the pick depends on the seed only, not on the file's order.
    candidates = sorted({r["note_id"] for r in in_split.values()} - already_whole)
    picked = sorted(random.Random(seed).sample(candidates, n))
    notes = {note.note_id: note for note in read_notes(CORPUS) if note.note_id in picked}
    per_note = [[{"id": s.id, "note_id": s.note_id, "section": s.section, "text": s.text}
                 for s in note_sentences(notes[note_id]) if s.id not in in_split] for note_id in picked]  # fmt: skip
    work.mkdir(parents=True, exist_ok=True)
    rows = [row for note in per_note for row in note]
    (work / "to_annotate.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    # Whole notes per batch, filled greedily (largest note first into the smallest batch).
    cut: list[list[dict]] = [[] for _ in range(batches)]
    for note in sorted(per_note, key=len, reverse=True):
        min(cut, key=len).extend(note)
    for k, batch in enumerate(cut, start=1):
        batch.sort(key=lambda r: (picked.index(r["note_id"]), int(r["id"].rsplit("-s", 1)[1])))
        (work / f"batch{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in batch), encoding="utf-8")
    return picked


if __name__ == "__main__":
    gold_dir, split, n, seed, k, work = sys.argv[1:7]
    chosen = pick(Path(gold_dir), split, int(n), int(seed), int(k), Path(work))
    print(f"picked {len(chosen)} {split} notes: {', '.join(chosen)}")

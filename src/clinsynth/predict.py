"""Label a user's file with a trained classifier: sentences or whole notes in, JSONL out.

Input: JSONL (``text``, optional ``id``), CSV (a ``text`` column, optional ``id``), or TXT
(one sentence a line). With ``notes=True`` every item is a whole note, split into
sentences the way the corpus is (section headers dropped); a TXT file is then one note.
Output, one line per sentence::

    {"id", "text", "labels": [...], "scores": {CATEGORY: probability}, "note_id"?, "section"?}
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinsynth.classifier import SignsClassifier
from clinsynth.corpus import clean_and_split
from clinsynth.errors import DataError
from clinsynth.records import read_inputs

BATCH = 256
# "HISTORY OF PRESENT ILLNESS:  She ..." on one line: put the header on its own line.
_INLINE_HEADER = re.compile(r"^(\s*[A-Z][A-Z0-9 /&()'\-]{1,80}?:)[ \t]+(?=\S)", re.MULTILINE)


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    note_id: str | None = None
    section: str | None = None


def read_sentences(path: Path | str, notes: bool = False) -> list[Sentence]:
    """The sentences to label from a JSONL, CSV or TXT file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise DataError("input file not found", path=path)
    if path.suffix.lower() == ".txt":
        lines = path.read_text(encoding="utf-8").splitlines()
        if notes:
            return _note_sentences(path.stem, "\n".join(lines))
        # Line numbers, not text hashes, so repeated lines keep distinct ids.
        return [Sentence(f"{path.stem}-L{n}", line.strip()) for n, line in enumerate(lines, 1) if line.strip()]
    items = read_inputs(path)
    if not notes:
        return [Sentence(item.id, item.text, note_id=item.note_id) for item in items]
    out: list[Sentence] = []
    for item in items:
        out.extend(_note_sentences(item.id, item.text))
    return out


def _note_sentences(note_id: str, text: str) -> list[Sentence]:
    return [
        Sentence(f"{note_id}-s{k}", sentence, note_id=note_id, section=section or None)
        for k, (section, sentence) in enumerate(clean_and_split(_INLINE_HEADER.sub("\\1\n", text)))
    ]


def predict_file(
    classifier: SignsClassifier, input_path: Path | str, out_path: Path | str, notes: bool = False
) -> dict[str, Any]:
    """Label every sentence of ``input_path`` into ``out_path``; returns counts and timing."""
    from clinsynth.progress import progress

    sentences = read_sentences(input_path, notes=notes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    started = time.monotonic()
    counts: dict[str, int] = {}
    with tmp.open("w", encoding="utf-8") as fh:
        batches = [sentences[i : i + BATCH] for i in range(0, len(sentences), BATCH)]
        for batch in progress(batches, desc="predicting", disable=len(batches) < 2):
            scores = classifier.scores([s.text for s in batch])
            for sentence, labels, row in zip(batch, classifier.decide(scores), scores, strict=True):
                fh.write(json.dumps(_row(sentence, labels, row, classifier.labels), ensure_ascii=False) + "\n")
                for label in labels or ["NONE"]:
                    counts[label] = counts.get(label, 0) + 1
    tmp.replace(out_path)  # a finished file or none: never half a prediction set
    seconds = time.monotonic() - started
    return {"sentences": len(sentences), "seconds": seconds, "label_counts": counts, "out": str(out_path)}


def _row(sentence: Sentence, labels: list[str], scores: Sequence[float], names: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": sentence.id, "text": sentence.text, "labels": labels}
    row["scores"] = {n: round(float(s), 4) for n, s in zip(names, scores, strict=True)}
    if sentence.note_id is not None:
        row["note_id"] = sentence.note_id
    if sentence.section:
        row["section"] = sentence.section
    return row

"""Label a user's file with a trained classifier: sentences or whole notes in, JSONL out.

Input: JSONL (``text``, optional ``id``), CSV (a ``text`` column, optional ``id``), or TXT
(one sentence a line); an item without an id is given ``L<line>``. With ``notes=True`` every
item is a whole note, split into sentences the way the corpus is (section headers dropped);
a TXT file is then one note.
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
from clinsynth.fileio import atomic_open, check_file, output_lock, read_text
from clinsynth.records import clip_text, read_inputs

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
    """The sentences to label from a JSONL, CSV or TXT file (see the module docstring).

    Reading goes through :func:`~clinsynth.records.read_inputs`, as ``programs.label`` does,
    so ids, encodings, errors and the :data:`~clinsynth.records.MAX_SENTENCE_CHARS` limit
    are the same; whole notes are clipped per sentence after splitting, not per note.
    """
    path = Path(path)
    if notes and path.suffix.lower() == ".txt":
        check_file(path)
        text = "\n".join(read_text(path).splitlines())  # CRLF as LF: the splitter reads \r as a line break
        out = _note_sentences(path.stem, text, path, None)
    elif notes:
        out = []
        for item in read_inputs(path, clip=False):
            out.extend(_note_sentences(item.id, item.text, path, item.line))
    else:
        out = [Sentence(item.id, item.text, note_id=item.note_id) for item in read_inputs(path)]
    if not out:  # e.g. notes that are only section headers
        raise DataError("no sentences in input", path=path)
    return out


def _note_sentences(note_id: str, text: str, path: Path, line: int | None) -> list[Sentence]:
    return [
        Sentence(f"{note_id}-s{k}", clip_text(sentence, path, line), note_id=note_id, section=section or None)
        for k, (section, sentence) in enumerate(clean_and_split(_INLINE_HEADER.sub("\\1\n", text)))
    ]


def predict_file(
    classifier: SignsClassifier, input_path: Path | str, out_path: Path | str, notes: bool = False
) -> dict[str, Any]:
    """Label every sentence of ``input_path`` into ``out_path``; returns counts and timing."""
    from clinsynth.progress import progress

    sentences = read_sentences(input_path, notes=notes)  # input errors raise before the output is touched
    out_path = Path(out_path)
    started = time.monotonic()
    counts: dict[str, int] = {}
    # A finished file or none, never half a prediction set; one run per output at a time (the
    # lock label takes), so a second run on the same --out stops at once instead of losing silently.
    with output_lock(out_path), atomic_open(out_path) as fh:
        batches = [sentences[i : i + BATCH] for i in range(0, len(sentences), BATCH)]
        for batch in progress(batches, desc="predicting", disable=len(batches) < 2):
            for row in predicted_rows(classifier, batch):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                for label in row["labels"] or ["NONE"]:
                    counts[label] = counts.get(label, 0) + 1
    seconds = time.monotonic() - started
    return {"sentences": len(sentences), "seconds": seconds, "label_counts": counts, "out": str(out_path)}


def predicted_rows(classifier: SignsClassifier, sentences: Sequence[Sentence]) -> list[dict[str, Any]]:
    """The output rows of ``sentences``, scored in batches of :data:`BATCH` as every engine scores them.

    The batch matters: padding to another batch's longest sentence changes scores in the
    last digits, so the local and the Ray engine both score through here.
    """
    rows = []
    for start in range(0, len(sentences), BATCH):
        batch = sentences[start : start + BATCH]
        scores = classifier.scores([s.text for s in batch])
        for sentence, labels, row in zip(
            batch, classifier.decide(scores, [s.text for s in batch]), scores, strict=True
        ):
            rows.append(_row(sentence, labels, row, classifier.labels))
    return rows


def _row(sentence: Sentence, labels: list[str], scores: Sequence[float], names: Sequence[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": sentence.id, "text": sentence.text, "labels": labels}
    row["scores"] = {n: round(float(s), 4) for n, s in zip(names, scores, strict=True)}
    if sentence.note_id is not None:
        row["note_id"] = sentence.note_id
    if sentence.section:
        row["section"] = sentence.section
    return row

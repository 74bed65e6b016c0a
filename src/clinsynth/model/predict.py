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
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from clinsynth.data.corpus import clean_and_split
from clinsynth.data.fileio import atomic_write_text, check_file, output_error, output_lock, read_text
from clinsynth.data.records import clip_text, iter_inputs, repair_tail
from clinsynth.errors import DataError
from clinsynth.model.classifier import SignsClassifier

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

    Reading goes through :func:`~clinsynth.data.records.read_inputs`, as ``programs.label`` does,
    so ids, encodings, errors and the :data:`~clinsynth.data.records.MAX_SENTENCE_CHARS` limit
    are the same; whole notes are clipped per sentence after splitting, not per note.
    """
    out = list(iter_sentences(path, notes))
    if not out:  # e.g. notes that are only section headers
        raise DataError("no sentences in input", path=Path(path))
    return out


def iter_sentences(path: Path | str, notes: bool = False, clip: bool = True) -> Iterator[Sentence]:
    """:func:`read_sentences` one sentence at a time, in bounded memory (a TXT of notes is one note).

    ``clip=False`` leaves over-long sentences whole and unreported (a counting pass: the pass
    that scores them clips them and warns, once).
    """
    path = Path(path)
    if notes and path.suffix.lower() == ".txt":
        check_file(path)
        text = "\n".join(read_text(path).splitlines())  # CRLF as LF: the splitter reads \r as a line break
        yield from _note_sentences(path.stem, text, path, None, clip)
    elif notes:
        for item in iter_inputs(path, clip=False):
            yield from _note_sentences(item.id, item.text, path, item.line, clip)
    else:
        for item in iter_inputs(path, clip=clip):
            yield Sentence(item.id, item.text, note_id=item.note_id)


def count_sentences(path: Path | str, notes: bool = False) -> int:
    """How many sentences the input holds, every line validated on the way; none is an error."""
    total = sum(1 for _ in iter_sentences(path, notes, clip=False))
    if not total:  # e.g. notes that are only section headers
        raise DataError("no sentences in input", path=Path(path))
    return total


def _note_sentences(note_id: str, text: str, path: Path, line: int | None, clip: bool = True) -> list[Sentence]:
    pairs = clean_and_split(_INLINE_HEADER.sub("\\1\n", text), keep_abbreviation_commas=True)
    return [
        Sentence(f"{note_id}-s{k}", clip_text(sentence, path, line) if clip else sentence, note_id=note_id,
                 section=section or None)
        for k, (section, sentence) in enumerate(pairs)
    ]  # fmt: skip


Revise = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def predict_file(
    classifier: SignsClassifier, input_path: Path | str, out_path: Path | str, notes: bool = False,
    total: int | None = None, revise: Revise | None = None,
) -> dict[str, Any]:
    """Label every sentence of ``input_path`` into ``out_path``; returns counts and timing.

    Streams: the input is read twice (once to validate and count, :func:`count_sentences`, so
    a bad line fails before anything is written; once to score, :data:`BATCH` sentences at a time), so memory does
    not grow with the input. Rows go to ``<out>.part`` as they are scored, which replaces
    ``out`` only when every sentence is in: ``out`` is a finished file or the previous one.
    A killed run leaves the part file; a rerun with the same input, model and ``notes``
    resumes after its last whole row, anything else starts over.

    ``revise`` rewrites each batch's rows before they are written (a saved model's LLM check,
    ``clinsynth.programs.addition_check``, which this layer does not import).
    """
    from clinsynth.progress import progress_bar

    input_path, out_path = Path(input_path), Path(out_path)
    if total is None:  # ``count_sentences`` already ran when given: input errors raise before any output
        total = count_sentences(input_path, notes)
    started = time.monotonic()
    counts: dict[str, int] = {}
    # One run per output at a time (the lock label takes): a second run on the same --out stops
    # at once instead of losing silently.
    with output_lock(out_path):
        part = _Part(out_path, {**_resume_key(classifier, input_path, notes), "revised": revise is not None})
        done = part.resume(counts)
        sentences = iter_sentences(input_path, notes)
        skipped = list(islice(sentences, done))
        if done and skipped[-1].id != part.last_id:  # the input changed under the same key: start over
            done = part.restart(counts)
            sentences = iter_sentences(input_path, notes)
        with progress_bar(total, "predicting", initial=done, disable=total <= BATCH) as bar:
            while batch := list(islice(sentences, BATCH)):
                rows = predicted_rows(classifier, batch)
                if revise is not None:
                    rows = revise(rows)
                part.append(rows)
                for row in rows:
                    for label in row["labels"] or ["NONE"]:
                        counts[label] = counts.get(label, 0) + 1
                bar.update(len(batch))
        part.finish()
    seconds = time.monotonic() - started
    return {"sentences": total, "seconds": seconds, "label_counts": counts, "out": str(out_path),
            "resumed_after": done}  # fmt: skip


def _resume_key(classifier: Any, input_path: Path, notes: bool) -> dict[str, Any]:
    """What a part file must have been written from to be resumed: this input (as it is now), model and mode."""
    stat = input_path.stat()
    info = getattr(classifier, "info", None)
    return {"input": str(input_path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "notes": notes,
            "model": f"{getattr(info, 'mix', '')} {getattr(info, 'created_at', '')}", "batch": BATCH}  # fmt: skip


class _Part:
    """``<out>.part`` (rows so far) and ``<out>.part.json`` (what they were made from)."""

    def __init__(self, out: Path, key: dict[str, Any]) -> None:
        self.out, self.key = out, key
        self.path = out.with_name(out.name + ".part")
        self.meta = out.with_name(out.name + ".part.json")
        self.existed = out.is_file()
        self.last_id = ""

    def resume(self, counts: dict[str, int]) -> int:
        """Rows already in a part file written from the same key (their labels counted), else 0."""
        try:
            same = self.path.is_file() and json.loads(self.meta.read_text(encoding="utf-8")) == self.key
        except (OSError, ValueError):
            same = False
        if not same:
            return self.restart(counts)
        repair_tail(self.path)  # a row torn by a kill is scored again
        done = 0
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                row = json.loads(line)
                self.last_id = row["id"]
                for label in row["labels"] or ["NONE"]:
                    counts[label] = counts.get(label, 0) + 1
                done += 1
        return done

    def restart(self, counts: dict[str, int]) -> int:
        counts.clear()
        def write() -> None:
            self.path.write_text("", encoding="utf-8")
            atomic_write_text(self.meta, json.dumps(self.key))

        self._write(write)
        return 0

    def append(self, rows: list[dict[str, Any]]) -> None:
        def write() -> None:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
                fh.flush()
                os.fsync(fh.fileno())  # a kill loses at most the batch in flight

        self._write(write)

    def finish(self) -> None:
        self._write(lambda: os.replace(self.path, self.out))
        self.meta.unlink(missing_ok=True)

    def _write(self, step: Callable[[], Any]) -> None:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            step()
        except OSError as exc:
            raise output_error(self.out, exc, self.existed) from exc


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

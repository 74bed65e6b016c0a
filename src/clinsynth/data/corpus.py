"""The public corpus (MTSamples): read, deduplicate, clean and split notes into sentences.

MTSamples transcriptions carry three quirks that a plain sentence splitter trips on:
section headers run into the text (``HISTORY OF PRESENT ILLNESS:,``), commas stand for
line breaks (``...for this.,MEDICATIONS: ,``) and some characters are mis-encoded
(``â€™`` for an apostrophe). Cleaning happens here, once, so every consumer sees the same
sentences under the same ids.

Ids are stable: a note is ``mts-<n>`` where ``<n>`` is the smallest CSV ``id`` among the
rows sharing its transcription, and a sentence is ``<note id>-s<index>`` (index from 0 in
reading order, over the cleaned note).
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clinsynth.errors import DataError

REQUIRED_COLUMNS = ("id", "medical_specialty", "transcription")

# Mis-encodings seen in MTSamples: UTF-8 bytes decoded as cp1252. Listed explicitly
# because some (the closing quote's 0x9D) have no cp1252 character and defeat a
# generic re-encode.
_MOJIBAKE = {
    "â€™": "'",
    "â€˜": "'",
    "â€œ": '"',
    "â€\x9d": '"',
    "â€“": "-",
    "â€”": "-",
    "â€¦": "...",
    "Â°": "°",
    "Âµ": "µ",
    "Â®": "®",
    "Â½": "½",
    "Â¼": "¼",
    "Âº": "º",
    "Â·": "·",
    "Â©": "©",
    "Â ": " ",
    "Ã©": "é",
    "Ã¨": "è",
    "Ã¼": "ü",
}
_MOJIBAKE_RE = re.compile("|".join(re.escape(k) for k in sorted(_MOJIBAKE, key=len, reverse=True)))
_LEFTOVER_MOJIBAKE_RE = re.compile(r"[ÃÂâ][^\x00-\x7f]{1,2}")

# A comma that stands for a line break: after a sentence end or a header colon, or a
# run of commas. Ordinary commas inside sentences are never preceded by [.:;].
_LINEBREAK_COMMA_RE = re.compile(r"(?<=[.:;!?])\s*,|,\s*,")
# The same, except after "e.g." / "i.e." / "etc.", whose comma is the sentence's own. Only for
# text that is not the bundled corpus: its sentence ids (which gold records cite) come from the
# rule above, so changing that would move the ids of gold sentences.
_LINEBREAK_COMMA_KEEPING_ABBREVIATIONS_RE = re.compile(
    r"(?<=[.:;!?])(?<![eE]\.[gG]\.)(?<![iI]\.[eE]\.)(?<![eE][tT][cC]\.)\s*,|,\s*,"
)
# An all-caps section header alone on its line: run-in headers are followed by a
# line-break comma ("HISTORY OF PRESENT ILLNESS:,"). Inline labels such as
# "CN: unremarkable." stay part of their sentence.
_HEADER_RE = re.compile(r"^\s*([A-Z][A-Z0-9 /&()'\-,]{1,80}?)\s*:\s*$")
# A list number at the start of a line ("1.  She will try ...").
_LIST_NUMBER_RE = re.compile(r"^\s*\(?\d{1,2}[.)]\s+")
# Abbreviations that end in a period but do not end a sentence.
_ABBREVIATIONS = (
    "Dr",
    "Mr",
    "Mrs",
    "Ms",
    "St",
    "Jr",
    "Sr",
    "vs",
    "etc",
    "approx",
    "No",
    "Fig",
    "e.g",
    "i.e",
    "a.m",
    "p.m",
    "b.i.d",
    "t.i.d",
    "q.i.d",
    "q.d",
    "p.o",
    "q.h.s",
    "h.s",
    "p.r.n",
    "y.o",
    "Ph.D",
    "M.D",
    "D.O",
    "R.N",
)
_ABBREV_RE = re.compile(r"\b(?:" + "|".join(re.escape(a) for a in _ABBREVIATIONS) + r")\.$", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[]?[A-Z0-9])")
_MIN_ALNUM = 2


@dataclass(frozen=True)
class Note:
    """One deduplicated transcription and the metadata of every row that carried it."""

    note_id: str
    text: str
    specialties: tuple[str, ...]
    sample_names: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sentence:
    """One cleaned sentence of a note, with the section header it sits under."""

    id: str
    note_id: str
    index: int
    text: str
    section: str = ""
    specialties: tuple[str, ...] = field(default=())


def fix_mojibake(text: str) -> str:
    """Replace UTF-8-read-as-cp1252 sequences with the characters they stand for."""
    text = _MOJIBAKE_RE.sub(lambda m: _MOJIBAKE[m.group(0)], text)

    def _try_reencode(m: re.Match[str]) -> str:
        try:
            return m.group(0).encode("cp1252").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            return m.group(0)

    return _LEFTOVER_MOJIBAKE_RE.sub(_try_reencode, text)


def _split_lines(text: str, keep_abbreviation_commas: bool = False) -> list[str]:
    """Turn line-break commas back into line breaks."""
    rule = _LINEBREAK_COMMA_KEEPING_ABBREVIATIONS_RE if keep_abbreviation_commas else _LINEBREAK_COMMA_RE
    return [line.strip() for line in rule.sub("\n", text).split("\n")]


def _split_sentences(line: str) -> list[str]:
    """Split one line at sentence ends, keeping abbreviations such as 'Dr.' intact."""
    pieces: list[str] = []
    start = 0
    for m in _SENTENCE_END_RE.finditer(line):
        candidate = line[start : m.start()].rstrip("\"')] ")
        if _ABBREV_RE.search(candidate) or re.search(r"\b[A-Z]\.$", candidate):
            continue  # "Dr. Smith", "J. Doe", "p.o. daily": not a sentence end
        pieces.append(line[start : m.start()].strip())
        start = m.end()
    pieces.append(line[start:].strip())
    return [p for p in pieces if p]


def _is_header(name: str) -> bool:
    letters = [c for c in name if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def clean_and_split(text: str, keep_abbreviation_commas: bool = False) -> list[tuple[str, str]]:
    """Clean a transcription and split it into ``(section, sentence)`` pairs.

    ``keep_abbreviation_commas``: "(e.g., yelling)" stays one sentence; off for the bundled
    corpus, whose sentence ids gold cites (see ``_LINEBREAK_COMMA_KEEPING_ABBREVIATIONS_RE``).
    """
    text = fix_mojibake(text).replace("\r", "\n").replace("\t", " ")
    out: list[tuple[str, str]] = []
    section = ""
    for line in _split_lines(text, keep_abbreviation_commas):
        m = _HEADER_RE.match(line)
        if m and _is_header(m.group(1)):
            section = m.group(1).strip(" ,").upper()
            continue
        line = _LIST_NUMBER_RE.sub("", line)
        for sentence in _split_sentences(line):
            sentence = re.sub(r"\s+", " ", sentence).strip(" ,")
            if sum(c.isalnum() for c in sentence) >= _MIN_ALNUM:
                out.append((section, sentence))
    return out


def _open_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    if not path.exists():
        raise DataError(f"corpus file not found: {path}", path=path)
    csv.field_size_limit(sys.maxsize)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"missing column(s) {', '.join(missing)}", path=path, line=1)
            for row in reader:
                yield reader.line_num, row
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read corpus: {exc}", path=path) from exc


def read_notes(path: Path | str) -> list[Note]:
    """Read the corpus and merge rows that share a transcription into one note."""
    path = Path(path)
    groups: dict[str, dict] = {}
    for line, row in _open_rows(path):
        text = (row.get("transcription") or "").strip()
        if not text:
            continue  # a handful of MTSamples rows have no transcription
        try:
            row_id = int(row["id"])
        except (TypeError, ValueError) as exc:
            raise DataError(f"not an integer: {row['id']!r}", path=path, line=line, field="id") from exc
        g = groups.setdefault(text, {"ids": [], "spec": [], "names": [], "desc": []})
        g["ids"].append(row_id)
        for key, col in (("spec", "medical_specialty"), ("names", "sample_name"), ("desc", "description")):
            value = (row.get(col) or "").strip()
            if value and value not in g[key]:
                g[key].append(value)
    notes = [
        Note(
            note_id=f"mts-{min(g['ids'])}",
            text=text,
            specialties=tuple(g["spec"]),
            sample_names=tuple(g["names"]),
            descriptions=tuple(g["desc"]),
        )
        for text, g in groups.items()
    ]
    notes.sort(key=lambda n: int(n.note_id.split("-")[1]))
    return notes


def note_sentences(note: Note) -> list[Sentence]:
    """The cleaned sentences of one note, with stable ids."""
    return [
        Sentence(
            id=f"{note.note_id}-s{i}",
            note_id=note.note_id,
            index=i,
            text=text,
            section=section,
            specialties=note.specialties,
        )
        for i, (section, text) in enumerate(clean_and_split(note.text))
    ]


def iter_sentences(path: Path | str, notes: list[Note] | None = None) -> Iterator[Sentence]:
    """Every sentence of the corpus, note by note."""
    for note in notes if notes is not None else read_notes(path):
        yield from note_sentences(note)


def corpus_stats(path: Path | str) -> dict[str, int]:
    """Counts a person checks first: rows kept as notes, and sentences."""
    notes = read_notes(path)
    return {"notes": len(notes), "sentences": sum(len(note_sentences(n)) for n in notes)}


def split_sentences(text: str) -> list[str]:
    """The sentences of one line of text (generated text that ran on past one sentence)."""
    return _split_sentences(" ".join(text.split()))

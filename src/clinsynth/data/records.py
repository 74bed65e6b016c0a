"""The record schema, its JSONL IO, input readers and resumable output.

One record a line::

    {"id", "text", "labels": [CATEGORY...], "source": "gold|silver|bronze", "note_id"?,
     "split"?, "provenance": {"lm", "program", "program_sha256", "seed", "created_at",
     "confidence"?, "attributes"?}}

``labels == []`` means NONE. Labels are checked against the taxonomy on read; every error
names the file, line and field. Files are read as UTF-8 (a byte-order mark is dropped) and
written atomically or, for resumable outputs, under a lock (see :mod:`clinsynth.data.fileio`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from clinsynth.data.fileio import (
    atomic_open,
    atomic_path,
    check_file,
    check_utf8,
    iter_lines,
    open_text,
    output_error,
    output_lock,
)
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import DataError

log = logging.getLogger(__name__)

SOURCES = ("gold", "silver", "bronze")
INPUT_SUFFIXES = (".jsonl", ".csv", ".txt")
# The longest input item kept, in characters. A "sentence" longer than this is almost always
# a whole note or a file without line breaks; it is truncated (with a warning) rather than
# sent whole to a model with a bounded context. Label and predict both clip here.
MAX_SENTENCE_CHARS = 2000


@dataclass
class Provenance:
    lm: str
    program: str
    program_sha256: str
    seed: int | None = None
    created_at: str = field(default_factory=lambda: now_iso())
    confidence: float | None = None
    attributes: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Record:
    id: str
    text: str
    labels: list[str]
    source: str
    note_id: str | None = None
    split: str | None = None
    provenance: Provenance | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "text": self.text, "labels": list(self.labels), "source": self.source}
        if self.note_id is not None:
            out["note_id"] = self.note_id
        if self.split is not None:
            out["split"] = self.split
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_dict()
        return out


@dataclass(frozen=True)
class InputItem:
    """A sentence to process, as read from the corpus or a user's file."""

    id: str
    text: str
    note_id: str | None = None
    source: str | None = None
    line: int | None = field(default=None, compare=False)  # where it starts in its file, for messages


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def side_path(out: Path, suffix: str) -> Path:
    """A file that travels with ``out``: ``bronze.jsonl`` -> ``bronze.jsonl.<suffix>``."""
    return out.with_name(f"{out.name}.{suffix}")


def text_id(text: str) -> str:
    """A stable id for a text (generated sentences); input items without an id use :func:`line_id`."""
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def line_id(line: int) -> str:
    """The id of an input item that came without one: its line, so repeated sentences stay distinct."""
    return f"L{line}"


def clip_text(text: str, path: Path | str, line: int | None) -> str:
    """``text`` cut to :data:`MAX_SENTENCE_CHARS`, with a warning naming where it came from."""
    if len(text) <= MAX_SENTENCE_CHARS:
        return text
    where = f"{path}:{line}" if line is not None else str(path)
    log.warning(
        "%s: %d characters, longer than MAX_SENTENCE_CHARS; truncated to it (%d)",
        where,
        len(text),
        MAX_SENTENCE_CHARS,
    )
    return text[:MAX_SENTENCE_CHARS]


def _field(obj: dict, name: str, kind: type | tuple[type, ...], path: Path, line: int, required: bool = True) -> Any:
    if name not in obj or obj[name] is None:
        if required:
            raise DataError("missing", path=path, line=line, field=name)
        return None
    value = obj[name]
    if not isinstance(value, kind):
        raise DataError(
            f"expected {getattr(kind, '__name__', kind)}, got {type(value).__name__}", path=path, line=line, field=name
        )
    return value


def parse_record(obj: Any, path: Path, line: int, taxonomy: Taxonomy | None = None) -> Record:
    """Validate one decoded JSON object as a record."""
    if not isinstance(obj, dict):
        raise DataError("a record must be a JSON object", path=path, line=line)
    rid = _field(obj, "id", str, path, line)
    text = _field(obj, "text", str, path, line)
    if not text.strip():
        raise DataError("empty text", path=path, line=line, field="text")
    labels = _field(obj, "labels", list, path, line)
    if not all(isinstance(x, str) for x in labels):
        raise DataError("labels must be strings", path=path, line=line, field="labels")
    if taxonomy is not None and (unknown := taxonomy.unknown_labels(labels)):
        raise DataError(
            f"unknown label(s) {unknown} (taxonomy {taxonomy.name!r})", path=path, line=line, field="labels"
        )
    source = _field(obj, "source", str, path, line)
    if source not in SOURCES:
        raise DataError(f"must be one of {SOURCES}, got {source!r}", path=path, line=line, field="source")
    prov = _field(obj, "provenance", dict, path, line, required=False)
    provenance = None
    if prov is not None:
        try:
            provenance = Provenance(**prov)
        except TypeError as exc:
            raise DataError(str(exc), path=path, line=line, field="provenance") from exc
    return Record(
        id=rid,
        text=text,
        labels=list(labels),
        source=source,
        note_id=_field(obj, "note_id", str, path, line, required=False),
        split=_field(obj, "split", str, path, line, required=False),
        provenance=provenance,
    )


def deepest_line(text: str) -> tuple[int, int]:
    """(line, depth) where ``text``'s JSON nests deepest: where to point when a document is too deep to decode."""
    depth = best = 0
    line = best_line = 1
    in_string = escaped = False
    for char in text:
        if char == "\n":
            line += 1
        elif in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > best:
                best, best_line = depth, line
        elif char in "]}":
            depth -= 1
    return best_line, best


def decode_json(text: str, path: Path, first_line: int = 1) -> Any:
    """``json.loads`` whose errors are DataErrors naming the file and line, nesting too deep included."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path=path, line=first_line + exc.lineno - 1) from exc
    except RecursionError as exc:  # the decoder recurses once per level
        line, depth = deepest_line(text)
        raise DataError(f"JSON nested {depth} levels deep; no record nests like that", path=path,
                        line=first_line + line - 1) from exc  # fmt: skip


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, Any]]:
    """Decoded JSON objects with their line numbers; blank lines are skipped."""
    path = Path(path)
    check_file(path, "file")
    for line_no, line in iter_lines(path):
        if not line.strip():
            continue
        yield line_no, decode_json(line, path, line_no)


def read_records(path: Path | str, taxonomy: Taxonomy | None = None) -> list[Record]:
    """Read and validate a JSONL file of records; duplicate ids are an error."""
    path = Path(path)
    records: list[Record] = []
    seen: dict[str, int] = {}
    for line_no, obj in iter_jsonl(path):
        rec = parse_record(obj, path, line_no, taxonomy)
        if rec.id in seen:
            raise DataError(
                f"duplicate id {rec.id!r} (first on line {seen[rec.id]})", path=path, line=line_no, field="id"
            )
        seen[rec.id] = line_no
        records.append(rec)
    return records


def read_inputs(path: Path | str, clip: bool = True) -> list[InputItem]:
    """Sentences to process from JSONL (``text``, optional ``id``), CSV (``text`` column) or TXT.

    An item without an id gets :func:`line_id` of the line it starts on, so a sentence may
    repeat; a repeated explicit id is an error naming both lines. Texts longer than
    :data:`MAX_SENTENCE_CHARS` are truncated with a warning, unless ``clip`` is False (whole
    notes, which the caller splits and clips per sentence). An input without any sentence
    is an error.
    """
    items = list(iter_inputs(path, clip))
    if not items:
        raise DataError("no sentences in input", path=Path(path))
    return items


def iter_inputs(path: Path | str, clip: bool = True) -> Iterator[InputItem]:
    """:func:`read_inputs` one item at a time, for inputs of any size (``clinsynth predict``).

    Memory stays bounded for TXT, whose ids are line numbers and cannot repeat; JSONL and CSV
    remember each id to refuse a repeat. An empty input yields nothing.
    """
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        items = _jsonl_inputs(path)
    elif suffix == ".csv":
        items = _csv_inputs(path)
    elif suffix == ".txt":
        items = (InputItem(id=line_id(n), text=t.strip(), line=n) for n, t in iter_lines(path) if t.strip())
    else:
        raise DataError(f"unsupported input type {suffix!r}; use one of {INPUT_SUFFIXES}", path=path)
    first_line: dict[str, int | None] = {}
    for item in items:
        if suffix != ".txt":
            if item.id in first_line:
                # An explicit id may also collide with the line id of an item that has none.
                hint = "; an item without an id gets 'L<line>'" if item.id.startswith("L") else ""
                raise DataError(
                    f"duplicate id {item.id!r} (first on line {first_line[item.id]}{hint})",
                    path=path,
                    line=item.line,
                    field="id",
                )
            first_line[item.id] = item.line
        if clip and len(item.text) > MAX_SENTENCE_CHARS:
            item = replace(item, text=clip_text(item.text, path, item.line))
        yield item


def _jsonl_inputs(path: Path) -> Iterator[InputItem]:
    for line_no, obj in iter_jsonl(path):
        if not isinstance(obj, dict):
            raise DataError("each line must be a JSON object", path=path, line=line_no)
        text = _field(obj, "text", str, path, line_no)
        if not text.strip():
            raise DataError("empty text", path=path, line=line_no, field="text")
        rid = obj.get("id")
        if rid is not None and not isinstance(rid, (str, int)):
            raise DataError("must be a string or integer", path=path, line=line_no, field="id")
        yield InputItem(
            id=str(rid) if rid is not None else line_id(line_no),
            text=text.strip(),
            note_id=obj.get("note_id") if isinstance(obj.get("note_id"), str) else None,
            source=obj.get("source") if isinstance(obj.get("source"), str) else None,
            line=line_no,
        )


def _csv_inputs(path: Path) -> Iterator[InputItem]:
    with open_text(path, newline="") as fh:
        # csv.reader rather than DictReader: its line_num before a row gives the row's
        # physical start line (a quoted field may span lines; blank lines are skipped).
        # strict: an unclosed quote is an error at its row, not the rest of the file read as one field.
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
        except csv.Error as exc:
            raise DataError(f"invalid CSV: {exc}", path=path, line=1) from exc
        if header is None:
            return
        check_utf8(",".join(header), path, 1)
        if "text" not in header:
            raise DataError("CSV needs a 'text' column", path=path, line=1, field="text")
        end = reader.line_num
        while True:
            try:
                fields = next(reader, None)
            except csv.Error as exc:  # e.g. an unclosed quote or a field over csv.field_size_limit
                raise DataError(f"invalid CSV: {exc}", path=path, line=end + 1) from exc
            if fields is None:
                break
            start, end = end + 1, reader.line_num
            if not fields:
                continue
            check_utf8(",".join(fields), path, start)
            row = dict(zip(header, fields, strict=False))
            text = (row.get("text") or "").strip()
            if not text:
                raise DataError("empty text", path=path, line=start, field="text")
            rid = (row.get("id") or "").strip()
            yield InputItem(id=rid or line_id(start), text=text, note_id=(row.get("note_id") or None), line=start)


def repair_tail(path: Path) -> None:
    """Drop a partial last line left by a killed writer, so appends stay valid JSONL."""
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        data = path.read_bytes()
        cut = data.rfind(b"\n") + 1
        fh.truncate(cut)


def done_ids(path: Path | str) -> set[str]:
    """Ids already in an output file (empty if it does not exist); a partial last line is ignored."""
    path = Path(path)
    if not path.exists():
        return set()
    ids: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.endswith("\n"):
                break  # a writer killed mid-line; ResumableWriter drops it
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=path, line=line_no) from exc
            if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
                raise DataError("existing output has a line without an 'id'", path=path, line=line_no, field="id")
            ids.add(obj["id"])
    return ids


class ResumableWriter:
    """Append records to a JSONL file, one flushed line each, skipping ids already there.

    A run killed at any point leaves a valid file (a partial last line is removed on the
    next open), and a rerun writes only what is missing. The file is created on the first
    write, so a run that writes nothing (a dead endpoint) leaves no empty output behind. The
    writer holds :func:`~clinsynth.data.fileio.output_lock` while open, so a second writer on
    the same file (another run, or this one twice) fails at once instead of interleaving lines.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._stack = ExitStack()
        self._stack.enter_context(output_lock(self.path))  # creates the parent folders
        self._fh: TextIO | None = None
        try:
            if self.path.exists():
                repair_tail(self.path)
            self.done: set[str] = done_ids(self.path)
        except BaseException:
            self._stack.close()
            raise

    def write(self, record: Record | dict[str, Any]) -> None:
        obj = record.to_dict() if isinstance(record, Record) else record
        if obj["id"] in self.done:
            return
        line = json.dumps(obj, ensure_ascii=False) + "\n"
        try:  # where the line starts, to cut a torn one back off
            size, existed = self.path.stat().st_size, True
        except FileNotFoundError:
            size, existed = 0, False
        try:
            if self._fh is None:
                self._fh = self._stack.enter_context(self.path.open("a", encoding="utf-8"))
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            # Disk full or the like: no torn line is left behind, the lines before stay.
            self._abandon(size, existed)
            raise output_error(self.path, exc, existed) from exc
        self.done.add(obj["id"])

    def _abandon(self, size: int, existed: bool) -> None:
        """After a failed write: close the file (its unwritten buffer dropped) and cut it back to ``size``."""
        if self._fh is not None:
            try:
                self._fh.close()  # flushes again and fails again, but closes the descriptor
            except OSError:
                pass
            self._fh = None  # a later write reopens the file
        try:
            if existed:
                os.truncate(self.path, size)
            elif self.path.exists():
                self.path.unlink()  # the run created it: no empty output left
        except OSError:
            pass  # the next open repairs a partial last line

    def close(self) -> None:
        self._stack.close()  # the file, then the lock; a second call does nothing

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(path: Path | str, records: Iterable[Record]) -> None:
    """Write records atomically: a temporary file renamed over the target."""
    with atomic_open(path) as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")


def export_parquet(records: Iterable[Record], path: Path | str) -> Path:
    """Write records as a Hugging Face ``datasets`` parquet file (``load_dataset("parquet", ...)``).

    Provenance is kept as a JSON string column, since its attributes differ by source.
    """
    from datasets import Dataset

    rows = [
        {
            "id": r.id,
            "text": r.text,
            "labels": list(r.labels),
            "source": r.source,
            "note_id": r.note_id,
            "confidence": r.provenance.confidence if r.provenance else None,
            "provenance": json.dumps(r.provenance.to_dict() if r.provenance else None, ensure_ascii=False),
        }
        for r in records
    ]
    path = Path(path)
    with atomic_path(path) as tmp:
        Dataset.from_list(rows).to_parquet(str(tmp))
    return path


def label_counts(records: Iterable[Record], names: Iterable[str]) -> dict[str, int]:
    """Sentences per category (taxonomy order), then NONE (records with no label)."""
    records = list(records)
    counts = Counter(label for r in records for label in r.labels)
    out = {n: counts.get(n, 0) for n in names}
    out[NONE_LABEL] = sum(not r.labels for r in records)
    return out

"""The record schema, its JSONL IO, input readers and resumable output.

One record a line::

    {"id", "text", "labels": [CATEGORY...], "source": "gold|silver|bronze", "note_id"?,
     "split"?, "provenance": {"lm", "program", "program_sha256", "seed", "created_at",
     "confidence"?, "attributes"?}}

``labels == []`` means NONE. Labels are checked against the taxonomy on read; every error
names the file, line and field.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clinsynth.errors import DataError
from clinsynth.taxonomy import Taxonomy

SOURCES = ("gold", "silver", "bronze")
INPUT_SUFFIXES = (".jsonl", ".csv", ".txt")


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


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def side_path(out: Path, suffix: str) -> Path:
    """A file that travels with ``out``: ``bronze.jsonl`` -> ``bronze.jsonl.<suffix>``."""
    return out.with_name(f"{out.name}.{suffix}")


def text_id(text: str) -> str:
    """A stable id for a sentence that came without one."""
    return "t-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


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


def iter_jsonl(path: Path | str) -> Iterator[tuple[int, Any]]:
    """Decoded JSON objects with their line numbers; blank lines are skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", path=path)
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"invalid JSON: {exc.msg}", path=path, line=line_no) from exc


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


def read_inputs(path: Path | str) -> list[InputItem]:
    """Sentences to process from JSONL (``text``, optional ``id``), CSV (``text`` column) or TXT."""
    path = Path(path)
    if not path.exists():
        raise DataError("input file not found", path=path)
    suffix = path.suffix.lower()
    items: list[InputItem] = []
    if suffix == ".jsonl":
        for line_no, obj in iter_jsonl(path):
            if not isinstance(obj, dict):
                raise DataError("each line must be a JSON object", path=path, line=line_no)
            text = _field(obj, "text", str, path, line_no)
            if not text.strip():
                raise DataError("empty text", path=path, line=line_no, field="text")
            rid = obj.get("id")
            if rid is not None and not isinstance(rid, (str, int)):
                raise DataError("must be a string or integer", path=path, line=line_no, field="id")
            items.append(
                InputItem(
                    id=str(rid) if rid is not None else text_id(text),
                    text=text.strip(),
                    note_id=obj.get("note_id") if isinstance(obj.get("note_id"), str) else None,
                    source=obj.get("source") if isinstance(obj.get("source"), str) else None,
                )
            )
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if "text" not in (reader.fieldnames or []):
                raise DataError("CSV needs a 'text' column", path=path, line=1, field="text")
            for row in reader:
                text = (row.get("text") or "").strip()
                if not text:
                    raise DataError("empty text", path=path, line=reader.line_num, field="text")
                rid = (row.get("id") or "").strip()
                items.append(InputItem(id=rid or text_id(text), text=text, note_id=(row.get("note_id") or None)))
    elif suffix == ".txt":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    items.append(InputItem(id=text_id(line.strip()), text=line.strip()))
    else:
        raise DataError(f"unsupported input type {suffix!r}; use one of {INPUT_SUFFIXES}", path=path)
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DataError(f"duplicate id {item.id!r}", path=path, field="id")
        seen.add(item.id)
    return items


def _repair_tail(path: Path) -> None:
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
    next open), and a rerun writes only what is missing.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _repair_tail(self.path)
        self.done: set[str] = done_ids(self.path)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, record: Record | dict[str, Any]) -> None:
        obj = record.to_dict() if isinstance(record, Record) else record
        if obj["id"] in self.done:
            return
        self._fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
        self._fh.flush()
        self.done.add(obj["id"])

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_records(path: Path | str, records: Iterable[Record]) -> None:
    """Write records atomically: a temporary file renamed over the target."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)


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
    tmp = path.with_name(path.name + ".tmp")
    Dataset.from_list(rows).to_parquet(str(tmp))
    os.replace(tmp, path)
    return path

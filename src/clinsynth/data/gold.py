"""The gold set: expert-labelled sentences split by note into train / dev / test.

Gold is private: the code treats it as it would a hospital's annotated EHR sentences
(see ``clinsynth.data.privacy``), even though this demo set is public MTSamples text.
"""

from __future__ import annotations

from pathlib import Path

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import Record, iter_jsonl, parse_record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import DataError

SPLITS = ("train", "dev", "test")
SENSITIVITY = Sensitivity.PRIVATE
# Every sentence of some whole test notes, not only those picked for annotation: the
# natural distribution a user meets on whole notes (mostly NONE), reported beside test.
WHOLE_NOTES = "whole_notes.jsonl"


def split_path(split: str, gold_dir: Path | str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    return Path(gold_dir) / f"{split}.jsonl"


def load_gold(gold_dir: Path | str, taxonomy: Taxonomy, splits: tuple[str, ...] = SPLITS) -> dict[str, list[Record]]:
    """Read and validate gold splits.

    Checks, each a DataError naming file, line and field: valid records with labels in
    the taxonomy, source ``gold``, a ``note_id``, a ``split`` matching the file, no empty
    text, no id twice anywhere, and no note in two splits.
    """
    note_home: dict[str, tuple[str, Path, int]] = {}
    id_home: dict[str, tuple[Path, int]] = {}
    out: dict[str, list[Record]] = {}
    for split in splits:
        path = split_path(split, gold_dir)
        records = []
        for line_no, obj in iter_jsonl(path):
            rec = _gold_record(obj, path, line_no, taxonomy)
            if rec.split != split:
                raise DataError(
                    f"record says {rec.split!r} but sits in the {split} file", path=path, line=line_no, field="split"
                )
            if rec.id in id_home:
                first, first_line = id_home[rec.id]
                raise DataError(
                    f"duplicate id {rec.id!r} (also {first}:{first_line})", path=path, line=line_no, field="id"
                )
            id_home[rec.id] = (path, line_no)
            home = note_home.get(rec.note_id)
            if home is not None and home[0] != split:
                raise DataError(
                    f"note {rec.note_id!r} is in two splits ({home[0]} at {home[1]}:{home[2]}, and {split})",
                    path=path,
                    line=line_no,
                    field="note_id",
                )
            note_home.setdefault(rec.note_id, (split, path, line_no))
            records.append(rec)
        out[split] = records
    return out


def _gold_record(obj: object, path: Path, line_no: int, taxonomy: Taxonomy) -> Record:
    """A valid record (labels in the taxonomy) of source ``gold`` with a note id, else a DataError at its line."""
    rec = parse_record(obj, path, line_no, taxonomy)
    if rec.source != "gold":
        raise DataError(f"expected 'gold', got {rec.source!r}", path=path, line=line_no, field="source")
    if not rec.note_id:
        raise DataError("missing (gold splits are by note)", path=path, line=line_no, field="note_id")
    return rec


def held_out_notes(gold_dir: Path | str) -> set[str]:
    """Notes of gold dev and test, which generated training data must never include."""
    notes: set[str] = set()
    for split in ("dev", "test"):
        path = split_path(split, gold_dir)
        if path.exists():
            notes.update(obj["note_id"] for _, obj in iter_jsonl(path) if isinstance(obj, dict) and "note_id" in obj)
    return notes


def load_whole_notes(gold_dir: Path | str, taxonomy: Taxonomy, test: list[Record]) -> list[Record]:
    """The whole-note test set (``WHOLE_NOTES``), or ``[]`` where the gold folder has none.

    Checks, each a DataError naming file, line and field: valid gold records of split
    ``test``, each in a note of gold test (so nothing in it was trained or tuned on), no id
    twice, and a sentence also in ``test.jsonl`` carrying the same labels there and here.
    """
    path = Path(gold_dir) / WHOLE_NOTES
    if not path.exists():
        return []
    test_notes = {r.note_id for r in test}
    test_labels = {r.id: sorted(r.labels) for r in test}
    seen: dict[str, int] = {}
    records = []
    for line_no, obj in iter_jsonl(path):
        rec = _gold_record(obj, path, line_no, taxonomy)
        if rec.split != "test" or rec.note_id not in test_notes:
            raise DataError(
                f"note {rec.note_id!r} (split {rec.split!r}) is not a gold test note: whole notes must be held out",
                path=path, line=line_no, field="note_id",
            )  # fmt: skip
        if rec.id in seen:
            raise DataError(f"duplicate id {rec.id!r} (also line {seen[rec.id]})", path=path, line=line_no, field="id")
        seen[rec.id] = line_no
        if rec.id in test_labels and sorted(rec.labels) != test_labels[rec.id]:
            raise DataError(
                f"{sorted(rec.labels)} here but {test_labels[rec.id]} in test.jsonl", path=path, line=line_no,
                field="labels",
            )  # fmt: skip
        records.append(rec)
    return records

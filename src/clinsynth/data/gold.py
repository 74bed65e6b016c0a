"""The gold set: expert-labelled sentences split by note into train / dev / test.

Gold is private: the code treats it as it would a hospital's annotated EHR sentences
(see ``clinsynth.data.privacy``), even though this demo set is public MTSamples text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import Record, iter_jsonl, parse_record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import DataError

SPLITS = ("train", "dev", "test")
SENSITIVITY = Sensitivity.PRIVATE
# Every sentence of some whole notes, not only those picked for annotation: the natural
# distribution a user meets on whole notes (mostly NONE). Test ones are reported beside
# test; dev ones join gold dev where the hybrid's threshold is fitted, so it is chosen for
# whole notes too and not only for the keyword-enriched dev set; train ones are training
# data (the ``whole-notes`` mix part): real sentences of the kind a student must learn to
# leave alone (normal findings, plans, history of other illnesses).
WHOLE_NOTES = "whole_notes.jsonl"
WHOLE_NOTES_FILES = {"test": WHOLE_NOTES, "dev": "whole_dev_notes.jsonl", "train": "whole_train_notes.jsonl"}


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


def load_whole_notes(gold_dir: Path | str, taxonomy: Taxonomy, held_out: list[Record],
                     split: str = "test") -> list[Record]:  # fmt: skip
    """The whole notes of gold ``split`` (``WHOLE_NOTES_FILES``), or ``[]`` where the folder has none.

    ``held_out`` is that split's records. Checks, each a DataError naming file, line and field:
    valid gold records of ``split``, each in a note of that split (so held-out whole notes hold
    nothing trained on), no id twice, and a sentence also in the split's file carrying the same labels there.
    """
    if split not in WHOLE_NOTES_FILES:
        raise ValueError(f"whole notes are kept for {', '.join(WHOLE_NOTES_FILES)}, not {split!r}")
    path = Path(gold_dir) / WHOLE_NOTES_FILES[split]
    if not path.exists():
        return []
    split_notes = {r.note_id for r in held_out}
    split_labels = {r.id: sorted(r.labels) for r in held_out}
    seen: dict[str, int] = {}
    records = []
    for line_no, obj in iter_jsonl(path):
        rec = _gold_record(obj, path, line_no, taxonomy)
        if rec.split != split or rec.note_id not in split_notes:
            raise DataError(
                f"note {rec.note_id!r} ({rec.split!r}) is not a gold {split} note: whole notes keep to their split",
                path=path, line=line_no, field="note_id",
            )  # fmt: skip
        if rec.id in seen:
            raise DataError(f"duplicate id {rec.id!r} (also line {seen[rec.id]})", path=path, line=line_no, field="id")
        seen[rec.id] = line_no
        if rec.id in split_labels and sorted(rec.labels) != split_labels[rec.id]:
            raise DataError(
                f"{sorted(rec.labels)} here but {split_labels[rec.id]} in {split}.jsonl", path=path, line=line_no,
                field="labels",
            )  # fmt: skip
        records.append(rec)
    return records


def whole_note_extras(gold_dir: Path | str, taxonomy: Taxonomy, gold: dict[str, list[Record]]) -> list[Record]:
    """The sentences of the whole notes of each split in ``gold`` that its file does not hold
    already (``load_whole_notes`` checks them): what whole notes add to those splits."""
    extras: list[Record] = []
    for split, records in gold.items():
        ids = {r.id for r in records}
        extras += [r for r in load_whole_notes(gold_dir, taxonomy, records, split) if r.id not in ids]
    return extras


def unseen(records: Sequence[Record], gold: dict[str, list[Record]], whole_seen: Sequence[Record] = ()) -> list[Record]:
    """``records`` less those whose text is in gold train or dev or in ``whole_seen``: a test sentence
    a model may have trained on (boilerplate such as "Denied.") measures memory, not generalisation."""
    from clinsynth.data.textstats import normalise

    seen = {normalise(r.text) for r in [*gold["train"], *gold["dev"], *whole_seen]}
    return [r for r in records if normalise(r.text) not in seen]


def trainable_whole_sentences(gold_dir: Path | str, taxonomy: Taxonomy,
                              gold: dict[str, list[Record]]) -> list[Record]:  # fmt: skip
    """The sentences the whole train and dev notes add to those splits: a model may train on them, so a
    test sentence repeating one is left out (``unseen``)."""
    return whole_note_extras(gold_dir, taxonomy, {split: gold[split] for split in ("train", "dev")})


def held_out_test_sets(gold_dir: Path | str, taxonomy: Taxonomy,
                       gold: dict[str, list[Record]]) -> dict[str, list[Record]]:  # fmt: skip
    """What a model is scored on after training: gold test and the whole test notes, each without the
    sentences whose text a model may have trained on (gold train and dev and their whole notes: ``unseen``)."""
    seen = trainable_whole_sentences(gold_dir, taxonomy, gold)
    whole = load_whole_notes(gold_dir, taxonomy, gold["test"], "test")
    return {"test": unseen(gold["test"], gold, seen), "whole_notes": unseen(whole, gold, seen)}


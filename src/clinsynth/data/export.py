"""Export a task's gold / silver / bronze records as a Hugging Face ``DatasetDict`` or parquet.

Splits are ``gold_train``, ``gold_dev``, ``gold_test``, ``silver`` and ``bronze`` (those
requested and present). Every split has the same features::

    id: string, text: string, labels: Sequence(ClassLabel(names=taxonomy.names)),
    source: string, note_id: string | None, split: string | None, provenance: string (JSON)

``labels == []`` means NONE. Provenance is a JSON string so that the schemas of the
sources match. The ``datasets`` format is ``DatasetDict.save_to_disk(out)`` (plus a
``README.md`` card and ``export_info.json``); the ``parquet`` format is one
``<split>.parquet`` per split, written from the Dataset so the ClassLabel names live in
the parquet schema metadata, plus ``dataset_info.json`` and a ``README.md`` card.

The output is written to a temporary sibling folder and renamed over the target, so a
failed export never leaves a half-written folder and an existing export is replaced only
by a complete new one. An existing folder that is not an export is never replaced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinsynth.data.gold import SPLITS, load_gold, split_path
from clinsynth.data.privacy import SOURCE_SENSITIVITY, Sensitivity
from clinsynth.data.records import SOURCES, Record, iter_jsonl, now_iso, parse_record
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import DataError

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

log = logging.getLogger(__name__)

FORMATS = ("datasets", "parquet")
GOLD_SPLITS = tuple(f"gold_{s}" for s in SPLITS)
CARD_NAME = "README.md"
PARQUET_INFO_NAME = "dataset_info.json"  # parquet format
DATASETS_INFO_NAME = "export_info.json"  # datasets format (its dataset_info.json names are taken)
# Files whose presence marks a folder as an earlier export that may be replaced.
_EXPORT_MARKERS = ("dataset_dict.json", PARQUET_INFO_NAME, DATASETS_INFO_NAME)
PRIVATE_NOTICE = (
    "The gold splits ({splits}) are private expert-labelled patient data: "
    "they must not be shared, published or uploaded (e.g. to the Hugging Face Hub)."
)


@dataclass(frozen=True)
class ExportConfig:
    out: Path  # a folder: DatasetDict.save_to_disk (datasets) or a folder of parquet files (parquet)
    format: str = "datasets"  # "datasets" | "parquet"
    sources: tuple[str, ...] = ("gold", "silver", "bronze")


@dataclass
class ExportResult:
    out: Path
    splits: dict[str, int]  # split name -> rows
    files: list[Path]
    warnings: list[str] = field(default_factory=list)  # skipped files, dropped duplicate ids


def features(taxonomy: Taxonomy) -> Features:
    """The features every exported split shares."""
    from datasets import ClassLabel, Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "text": Value("string"),
            "labels": Sequence(ClassLabel(names=list(taxonomy.names))),
            "source": Value("string"),
            "note_id": Value("string"),
            "split": Value("string"),
            "provenance": Value("string"),
        }
    )


def record_row(record: Record, taxonomy: Taxonomy) -> dict[str, Any]:
    """One record as a row: labels as ClassLabel ids in guideline order, provenance as JSON."""
    index = {name: i for i, name in enumerate(taxonomy.names)}
    return {
        "id": record.id,
        "text": record.text,
        "labels": [index[label] for label in taxonomy.canonical(record.labels)],
        "source": record.source,
        "note_id": record.note_id,
        "split": record.split,
        "provenance": json.dumps(
            record.provenance.to_dict() if record.provenance else None, ensure_ascii=False, sort_keys=True
        ),
    }


def export_data(
    taxonomy: Taxonomy, gold_dir: Path, silver: Path | None, bronze: Path | None, config: ExportConfig
) -> ExportResult:
    """Write the requested sources as a DatasetDict folder or a folder of parquet files.

    A requested file that is missing or empty is skipped with a warning; nothing left is
    a DataError. Duplicate ids within a split are dropped (first kept) with a warning.
    """
    _check_config(config)
    warnings: list[str] = []
    splits = _load_splits(taxonomy, Path(gold_dir), silver, bronze, config.sources, warnings)
    if not splits:
        raise DataError(f"nothing to export: none of the requested sources {list(config.sources)} is present")
    for name, records in list(splits.items()):
        if not records:  # save_to_disk writes an empty split that load_from_disk cannot read back
            _warn(f"skipping {name}: no records", warnings)
            del splits[name]
        else:
            splits[name] = _dedupe(name, records, warnings)
    if not splits:
        raise DataError(f"nothing to export: the requested sources {list(config.sources)} hold no records")

    from datasets import Dataset, DatasetDict

    feats = features(taxonomy)
    dataset = DatasetDict(
        {
            name: Dataset.from_list([record_row(r, taxonomy) for r in records], features=feats)
            for name, records in splits.items()
        }
    )
    counts = {name: len(records) for name, records in splits.items()}
    out = Path(config.out)
    _check_target(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        _write(dataset, tmp, taxonomy, counts, config.format)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    files = sorted(p for p in out.rglob("*") if p.is_file())
    log.info("exported %s to %s (%s)", counts, out, config.format)
    return ExportResult(out=out, splits=counts, files=files, warnings=warnings)


def _check_config(config: ExportConfig) -> None:
    if config.format not in FORMATS:
        raise DataError(f"unknown export format {config.format!r}; use one of {FORMATS}")
    unknown = [s for s in config.sources if s not in SOURCES]
    if unknown or not config.sources:
        raise DataError(f"unknown export source(s) {unknown or list(config.sources)}; use some of {SOURCES}")


def _warn(message: str, warnings: list[str]) -> None:
    log.warning(message)
    warnings.append(message)


def _skip(what: str, path: Path | None, warnings: list[str]) -> None:
    _warn(f"skipping {what}: no file at {path}" if path is not None else f"skipping {what}: no file given", warnings)


def _load_splits(
    taxonomy: Taxonomy,
    gold_dir: Path,
    silver: Path | None,
    bronze: Path | None,
    sources: tuple[str, ...],
    warnings: list[str],
) -> dict[str, list[Record]]:
    splits: dict[str, list[Record]] = {}
    if "gold" in sources:
        present = []
        for split in SPLITS:
            path = split_path(split, gold_dir)
            if path.exists():
                present.append(split)
            else:
                _skip(f"gold_{split}", path, warnings)
        if present:
            gold = load_gold(gold_dir, taxonomy, splits=tuple(present))
            splits.update({f"gold_{split}": gold[split] for split in present})
    for name, path in (("silver", silver), ("bronze", bronze)):
        if name not in sources:
            continue
        if path is None or not Path(path).exists():
            _skip(name, path, warnings)
            continue
        splits[name] = _read_lenient(Path(path), taxonomy)
    return splits


def _read_lenient(path: Path, taxonomy: Taxonomy) -> list[Record]:
    """Records validated against the taxonomy; duplicate ids are left to :func:`_dedupe`."""
    return [parse_record(obj, path, line, taxonomy) for line, obj in iter_jsonl(path)]


def _dedupe(split: str, records: list[Record], warnings: list[str]) -> list[Record]:
    seen: set[str] = set()
    kept: list[Record] = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            kept.append(record)
    dropped = len(records) - len(kept)
    if dropped:
        _warn(f"{split}: dropped {dropped} record(s) with a duplicate id (kept the first)", warnings)
    return kept


def _check_target(out: Path) -> None:
    """Refuse to replace a file, or a folder with content that is not an earlier export."""
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise DataError("export target exists and is not a folder", path=out)
    if any(out.iterdir()) and not any((out / marker).is_file() for marker in _EXPORT_MARKERS):
        raise DataError("export target is a folder that does not hold an earlier export; not replacing it", path=out)


def _write(dataset: DatasetDict, folder: Path, taxonomy: Taxonomy, counts: dict[str, int], fmt: str) -> None:
    info = _info(taxonomy, counts, fmt)
    if fmt == "datasets":
        dataset.save_to_disk(str(folder))
        info_name = DATASETS_INFO_NAME
    else:
        for name, split in dataset.items():
            split.to_parquet(str(folder / f"{name}.parquet"))
        info_name = PARQUET_INFO_NAME
    (folder / info_name).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / CARD_NAME).write_text(_card(info), encoding="utf-8")


def _info(taxonomy: Taxonomy, counts: dict[str, int], fmt: str) -> dict[str, Any]:
    sources = {name: "gold" if name in GOLD_SPLITS else name for name in counts}
    private = [name for name in counts if SOURCE_SENSITIVITY[sources[name]] is Sensitivity.PRIVATE]
    info: dict[str, Any] = {
        "taxonomy": taxonomy.name,
        "label_names": list(taxonomy.names),
        "none_label": f"an empty 'labels' list means {NONE_LABEL}",
        "format": fmt,
        "created_at": now_iso(),
        "splits": {
            name: {"rows": rows, "source": sources[name], "sensitivity": str(SOURCE_SENSITIVITY[sources[name]])}
            for name, rows in counts.items()
        },
        "private_splits": private,
    }
    if private:
        info["privacy"] = PRIVATE_NOTICE.format(splits=", ".join(private))
    return info


def _card(info: dict[str, Any]) -> str:
    lines = [f"# clinsynth export: {info['taxonomy']}", ""]
    if info.get("privacy"):
        lines += [f"**PRIVATE DATA.** {info['privacy']}", ""]
    lines += ["| split | rows | source | sensitivity |", "|---|---:|---|---|"]
    lines += [f"| {n} | {s['rows']} | {s['source']} | {s['sensitivity']} |" for n, s in info["splits"].items()]
    lines += ["", "## Labels", ""]
    lines += [f"{i}. {name}" for i, name in enumerate(info["label_names"])]
    lines += [
        "",
        f"`labels` is a list of ClassLabel ids; {info['none_label']}. `provenance` is a JSON string.",
        "",
    ]
    if info["format"] == "parquet":
        lines += ["Load with `datasets.load_dataset('parquet', data_files={'<split>': '<split>.parquet'})`.", ""]
    else:
        lines += ["Load with `datasets.load_from_disk(<this folder>)`.", ""]
    return "\n".join(lines)


def _swap(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` over ``out``; an existing ``out`` is kept until then."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)

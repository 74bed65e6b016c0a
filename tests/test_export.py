"""export_data: DatasetDict and parquet round trips, skips, de-duplication, atomic replace."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from clinsynth.data.export import ExportConfig, export_data
from clinsynth.data.records import Provenance, Record, write_records
from clinsynth.data.taxonomy import Taxonomy, load_taxonomy
from clinsynth.errors import DataError
from tests.mini_data import records, write_gold

if TYPE_CHECKING:
    from datasets import Dataset


@pytest.fixture
def taxonomy(mini_taxonomy_path: Path) -> Taxonomy:
    return load_taxonomy(mini_taxonomy_path)


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path, Path]:
    gold_dir = write_gold(tmp_path / "gold")
    prov = Provenance(lm="fake", program="p", program_sha256="0" * 64, confidence=0.9, attributes={"k": "v"})
    silver = tmp_path / "silver.jsonl"
    write_records(
        silver,
        [
            Record("s1", "Febrile and coughing.", ["COUGH", "FEVER"], "silver", note_id="c1", provenance=prov),
            Record("s2", "Skin is warm.", [], "silver", note_id="c2", provenance=prov),
        ],
    )
    bronze = tmp_path / "bronze.jsonl"
    write_records(bronze, [Record("b1", "He has a cough.", ["COUGH"], "bronze")])
    return gold_dir, silver, bronze


def _names(split: Dataset, taxonomy_names: list[str]) -> dict[str, list[str]]:
    feature = split.features["labels"].feature
    assert feature.names == taxonomy_names
    return {row["id"]: feature.int2str(row["labels"]) for row in split}


def test_datasets_round_trip(tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path]) -> None:
    from datasets import load_from_disk

    gold_dir, silver, bronze = data
    out = tmp_path / "export"
    result = export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out))
    expected = {f"gold_{s}": len(records(s)) for s in ("train", "dev", "test")} | {"silver": 2, "bronze": 1}
    assert result.splits == expected
    assert result.out == out and result.warnings == []
    assert all(p.is_file() and out in p.parents for p in result.files)

    loaded = load_from_disk(str(out))
    assert {name: len(split) for name, split in loaded.items()} == expected
    names = list(taxonomy.names)
    silver_labels = _names(loaded["silver"], names)
    assert silver_labels == {"s1": ["FEVER", "COUGH"], "s2": []}  # guideline order; [] is NONE
    gold = {r.id: r.labels for r in records("train")}
    assert _names(loaded["gold_train"], names) == gold
    row = loaded["silver"][0]
    assert row["source"] == "silver" and row["note_id"] == "c1" and row["split"] is None
    assert json.loads(row["provenance"])["attributes"] == {"k": "v"}
    assert json.loads(loaded["bronze"][0]["provenance"]) is None
    assert loaded["gold_dev"][0]["split"] == "dev"
    card = (out / "README.md").read_text()
    assert "private" in card and "must not be shared" in card and "gold_train" in card
    info = json.loads((out / "export_info.json").read_text())
    assert info["label_names"] == names and info["private_splits"] == ["gold_train", "gold_dev", "gold_test"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export.")]  # no temp folders left


def test_parquet_files(tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path]) -> None:
    import pyarrow.parquet as pq
    from datasets import Features, load_dataset

    gold_dir, silver, bronze = data
    out = tmp_path / "pq"
    result = export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, format="parquet"))
    for split, rows in result.splits.items():
        table = pq.read_table(out / f"{split}.parquet")
        assert table.num_rows == rows
        feats = Features.from_arrow_schema(table.schema)  # ClassLabel names survive in the metadata
        assert feats["labels"].feature.names == list(taxonomy.names)
    loaded = load_dataset("parquet", data_files={"silver": str(out / "silver.parquet")}, cache_dir=str(tmp_path / "c"))
    assert _names(loaded["silver"], list(taxonomy.names)) == {"s1": ["FEVER", "COUGH"], "s2": []}
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["splits"]["bronze"]["rows"] == 1 and info["label_names"] == list(taxonomy.names)
    assert "must not be shared" in (out / "README.md").read_text()
    parquet = {f"{s}.parquet" for s in result.splits}
    assert {p.name for p in result.files} == parquet | {"dataset_info.json", "README.md"}


def test_duplicate_id_dropped(
    tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    from datasets import load_from_disk

    gold_dir, silver, _ = data
    with silver.open("a") as fh:
        fh.write(json.dumps({"id": "s1", "text": "A second s1.", "labels": [], "source": "silver"}) + "\n")
    out = tmp_path / "export"
    with caplog.at_level(logging.WARNING, logger="clinsynth.data.export"):
        result = export_data(taxonomy, gold_dir, silver, None, ExportConfig(out=out, sources=("silver",)))
    assert result.splits == {"silver": 2}
    assert any("dropped 1" in m for m in result.warnings) and "dropped 1" in caplog.text
    loaded = load_from_disk(str(out))
    assert loaded["silver"]["text"] == ["Febrile and coughing.", "Skin is warm."]  # the first s1 kept
    assert "PRIVATE" not in (out / "README.md").read_text()  # no gold, no privacy notice


def test_missing_silver_skipped(
    tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    gold_dir, _, bronze = data
    missing = tmp_path / "nope" / "silver.jsonl"
    with caplog.at_level(logging.WARNING, logger="clinsynth.data.export"):
        result = export_data(taxonomy, gold_dir, missing, bronze, ExportConfig(out=tmp_path / "export"))
    assert "silver" not in result.splits and result.splits["bronze"] == 1
    assert any(str(missing) in m for m in result.warnings) and str(missing) in caplog.text


def test_empty_file_skipped(tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path]) -> None:
    from datasets import load_from_disk

    gold_dir, silver, bronze = data
    bronze.write_text("")
    out = tmp_path / "export"
    result = export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, sources=("silver", "bronze")))
    assert result.splits == {"silver": 2} and "skipping bronze: no records" in result.warnings
    assert set(load_from_disk(str(out))) == {"silver"}
    with pytest.raises(DataError, match="no records"):
        export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, sources=("bronze",)))


def test_nothing_present_is_an_error(tmp_path: Path, taxonomy: Taxonomy) -> None:
    out = tmp_path / "export"
    with pytest.raises(DataError, match="nothing to export"):
        export_data(taxonomy, tmp_path / "no-gold", None, tmp_path / "none.jsonl", ExportConfig(out=out))
    assert not out.exists()
    with pytest.raises(DataError, match="format"):
        export_data(taxonomy, tmp_path, None, None, ExportConfig(out=out, format="csv"))


@pytest.mark.parametrize("fmt", ["datasets", "parquet"])
def test_failure_keeps_existing_output(
    tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    from datasets import Dataset

    gold_dir, silver, bronze = data
    out = tmp_path / "export"
    export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, format=fmt, sources=("bronze",)))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    calls = {"n": 0}
    real = Dataset.to_parquet if fmt == "parquet" else Dataset.save_to_disk

    def fail_second(self: Dataset, *args: Any, **kwargs: Any) -> Any:  # the first split is written, the second fails
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Dataset, "to_parquet" if fmt == "parquet" else "save_to_disk", fail_second)
    with pytest.raises(OSError, match="disk full"):
        export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, format=fmt))
    assert calls["n"] == 2
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".export.")) == []


def test_replaces_earlier_export_but_not_other_folders(
    tmp_path: Path, taxonomy: Taxonomy, data: tuple[Path, Path, Path]
) -> None:
    from datasets import load_from_disk

    gold_dir, silver, bronze = data
    out = tmp_path / "export"
    export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, sources=("bronze",)))
    result = export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=out, sources=("silver", "bronze")))
    assert set(load_from_disk(str(out))) == {"silver", "bronze"} == set(result.splits)

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not replacing"):
        export_data(taxonomy, gold_dir, silver, bronze, ExportConfig(out=other))
    assert [p.name for p in other.iterdir()] == ["keep.txt"]

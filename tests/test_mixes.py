"""Training mixes: parsing, confident silver, bronze with and without the round-trip filter."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from clinsynth.data.mixes import MixSources, load_mix, parse_mix
from clinsynth.data.records import Provenance, Record, write_records
from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.errors import DataError
from tests.mini_data import write_gold


def _prov(confidence: float | None = None, target: str | None = None) -> Provenance:
    attributes = {"target": target} if target else None
    return Provenance(lm="x", program="p", program_sha256="0" * 64, confidence=confidence, attributes=attributes)


@pytest.fixture
def sources(tmp_path: Path) -> MixSources:
    write_gold(tmp_path / "gold")
    silver = [
        Record("s1", "Feverish.", ["FEVER"], "silver", provenance=_prov(0.9)),
        Record("s2", "Coughing.", ["COUGH"], "silver", provenance=_prov(0.3)),
        Record("s3", "Nothing.", [], "silver", provenance=_prov(0.7)),
    ]
    write_records(tmp_path / "silver.jsonl", silver)
    bronze = [Record(f"b{i}", f"Fever {i}.", ["FEVER"], "bronze", provenance=_prov(0.8, "FEVER")) for i in range(3)]
    bronze.append(Record("bn", "No fever.", [], "bronze", provenance=_prov(0.8, "NONE")))
    write_records(tmp_path / "bronze.jsonl", bronze)
    dropped = [
        {"id": f"d{i}", "text": f"Drifted {i}.", "target": "FEVER", "labels": ["FEVER"], "filter": "round_trip"}
        for i in range(5)
    ] + [{"id": "p", "text": "Dr. Smith.", "target": "FEVER", "labels": ["FEVER"], "filter": "phi"}]
    (tmp_path / "bronze.jsonl.dropped.jsonl").write_text("".join(json.dumps(d) + "\n" for d in dropped))
    return MixSources(gold_dir=tmp_path / "gold", silver=tmp_path / "silver.jsonl", bronze=tmp_path / "bronze.jsonl")


@pytest.fixture
def taxonomy(mini_taxonomy_path):
    return load_taxonomy(mini_taxonomy_path)


def test_parse_mix_rejects_unknown_and_repeated_parts():
    assert parse_mix("gold+silver-confident") == ("gold", "silver-confident")
    with pytest.raises(DataError, match="unknown mix part"):
        parse_mix("gold+platinum")
    with pytest.raises(DataError, match="twice"):
        parse_mix("gold+gold")


def test_a_part_built_by_its_caller_parses_only_where_that_caller_names_it():
    # Cross-validation builds silver-agree itself (it needs the fold's gold student).
    from clinsynth.evals.cv import AGREE

    assert parse_mix(f"gold+{AGREE}", (AGREE,)) == ("gold", AGREE)
    with pytest.raises(DataError, match="unknown mix part"):
        parse_mix(f"gold+{AGREE}")  # a training mix cannot name it


def test_mixes_concatenate_parts_and_filter_silver_by_confidence(sources, taxonomy):
    gold = load_mix("gold", taxonomy, sources)
    assert {r.source for r in gold} == {"gold"} and all(r.split == "train" for r in gold)
    assert len(load_mix("gold+silver", taxonomy, sources)) == len(gold) + 3
    confident = load_mix("silver-confident", taxonomy, sources)
    assert [r.id for r in confident] == ["s1", "s3"]  # 0.3 < 0.5 dropped


def test_bronze_without_round_trip_has_the_same_size_per_target_but_includes_drops(sources, taxonomy):
    kept = load_mix("bronze", taxonomy, sources)
    unfiltered = load_mix("bronze-unfiltered", taxonomy, sources)
    assert len(unfiltered) == len(kept) == 4
    fever = [r for r in unfiltered if r.labels == ["FEVER"]]
    assert len(fever) == 3 and any(r.id.startswith("d") for r in unfiltered)  # 3 of 8 fever candidates
    assert not any(r.id == "p" for r in unfiltered)  # only round-trip drops come back
    assert [r.labels for r in unfiltered if r.id == "bn"] == [[]]


def test_a_missing_file_or_field_names_the_file_and_line(sources, taxonomy, tmp_path):
    with pytest.raises(DataError, match="make silver"):
        missing = MixSources(gold_dir=sources.gold_dir, silver=tmp_path / "none.jsonl", bronze=sources.bronze)
        load_mix("silver", taxonomy, missing)
    rows = (tmp_path / "bronze.jsonl.dropped.jsonl").read_text().splitlines()
    rows[1] = json.dumps({k: v for k, v in json.loads(rows[1]).items() if k != "labels"})
    (tmp_path / "bronze.jsonl.dropped.jsonl").write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        load_mix("bronze-unfiltered", taxonomy, sources)
    assert "bronze.jsonl.dropped.jsonl:2" in str(err.value) and "labels" in str(err.value)


def test_capped_bronze_keeps_at_most_n_per_target_and_smaller_caps_are_subsets():
    from clinsynth.data.mixes import capped_bronze

    def bronze(i: int, target: str) -> Record:
        provenance = Provenance(lm="local", program="p", program_sha256="0", attributes={"target": target})
        return Record(id=f"b{i}", text=f"sentence {i}", labels=[target], source="bronze", provenance=provenance)

    records = [bronze(i, "A") for i in range(10)] + [bronze(i, "B") for i in range(10, 13)]
    two, five = capped_bronze(records, 2), capped_bronze(records, 5)
    assert Counter(r.labels[0] for r in two) == {"A": 2, "B": 2}
    assert Counter(r.labels[0] for r in five) == {"A": 5, "B": 3}  # B has only 3
    assert {r.id for r in two} <= {r.id for r in five}
    assert [r.id for r in five] == sorted((r.id for r in five), key=lambda i: int(i[1:]))  # file order kept
    assert parse_mix("gold+bronze:25") == ("gold", "bronze:25")
    for bad in ("gold+bronze:0", "gold+bronze:x", "bronze+bronze:5"):
        with pytest.raises(DataError):
            parse_mix(bad)

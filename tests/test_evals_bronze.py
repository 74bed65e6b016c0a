import json
from pathlib import Path

from clinsynth.evals import bronze_quality
from clinsynth.evals import run as evals_run

from clinsynth.data.records import Provenance, Record, write_records
from clinsynth.data.taxonomy import load_taxonomy
from tests.bow import bow_embed
from tests.conftest import write_task


def rec(i: int, text: str, labels: list[str], source: str) -> Record:
    prov = Provenance(lm="local/test", program="p", program_sha256="0" * 64, seed=0) if source == "bronze" else None
    return Record(id=f"{source}-{i}", text=text, labels=labels, source=source, provenance=prov)


def make_files(tmp_path: Path, bronze_texts: list[tuple[str, list[str]]]) -> tuple[Path, Path]:
    gold = tmp_path / "gold.jsonl"
    write_records(
        gold,
        [
            rec(0, "Temperature 39.2 C overnight.", ["FEVER"], "gold"),
            rec(1, "Persistent dry cough for weeks.", ["COUGH"], "gold"),
            rec(2, "Denies cough.", [], "gold"),
        ],
    )
    bronze = tmp_path / "bronze.jsonl"
    write_records(bronze, [rec(i, t, labels, "bronze") for i, (t, labels) in enumerate(bronze_texts)])
    report = {
        "config": {"round_trip": "drop", "near_duplicate": 0.9, "leak_cosine": 0.95, "leak_ngram": 8},
        "rounds": 1,
        "failed_calls": 0,
        "seconds": 1.0,
        "counts": {
            "FEVER": {"generated": 5, "phi": 1, "near_duplicate": 2, "kept": 2},
            "COUGH": {"generated": 1, "kept": 1},
        },
    }
    (tmp_path / "bronze.jsonl.report.json").write_text(json.dumps(report))
    return bronze, gold


def test_report_counts_diversity_distance_and_leaks(tmp_path: Path, mini_taxonomy_path: Path):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    bronze, gold = make_files(
        tmp_path,
        [
            ("Fever of 39.2 C overnight.", ["FEVER"]),  # near the gold fever sentence
            ("Febrile with rigors since yesterday.", ["FEVER"]),
            ("Persistent dry cough for weeks.", ["COUGH"]),  # a copy of gold: a leak
            ("Call Dr. Jones with questions.", []),  # PHI
        ],
    )
    out = tmp_path / "reports"
    results = bronze_quality.run(bronze, taxonomy, out, "cmd", embed=bow_embed, gold_paths=[gold])
    by_cat = {r["category"]: r for r in results["categories"]}
    assert by_cat["FEVER"]["bronze"] == 2 and by_cat["FEVER"]["gold"] == 1
    assert by_cat["FEVER"]["coverage"] == 1.0  # the gold fever sentence has a close bronze one
    assert by_cat["COUGH"]["centroid_distance"] == 0.0
    assert by_cat["NONE"]["coverage"] == 0.0
    assert 0 < by_cat["FEVER"]["distinct_2"] <= 1
    assert [leak["bronze"] for leak in results["leakage"]["leaks"]] == ["Persistent dry cough for weeks."]
    assert results["leakage"]["nearest_pairs"][0]["cosine"] == 1.0
    assert results["phi"] == [{"text": "Call Dr. Jones with questions.", "hits": ["name"]}]

    md = (out / "bronze.md").read_text()
    assert "**1 leak(s)**" in md and "| FEVER " in md and "| total " in md
    assert (out / "bronze.png").stat().st_size > 10_000
    assert json.loads((out / "bronze.json").read_text())["n_bronze"] == 4


def test_suite_runs_from_the_command_line(tmp_path: Path, mini_taxonomy_path: Path, monkeypatch, capsys):
    bronze, gold = make_files(tmp_path, [("Febrile with rigors.", ["FEVER"])])
    gold_dir = tmp_path / "gold_dir"
    gold_dir.mkdir()
    for split in ("train", "dev", "test"):
        (gold_dir / f"{split}.jsonl").write_text(gold.read_text())
    task = write_task(tmp_path / "task", taxonomy=mini_taxonomy_path, gold=gold_dir)
    monkeypatch.setattr("clinsynth.model.embeddings.encode", bow_embed)
    code = evals_run.main(["bronze-quality", "--task", str(task), "--bronze", str(bronze), "--out-dir", str(tmp_path)])
    assert code == 0
    assert "1 bronze sentences; leaks 0; PHI 0" in capsys.readouterr().out
    assert (tmp_path / "bronze.md").exists()

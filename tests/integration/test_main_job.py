"""``clinsynth run --quick``: every step of the main job with the real embedded LLM and SetFit."""

import json
from pathlib import Path

import pytest
from clinsynth.programs.label_to_data import LabelToData

from clinsynth.app.cli import main
from clinsynth.data.mixes import best_mix
from clinsynth.data.records import iter_jsonl, read_records, side_path
from clinsynth.data.task import LMSpec
from clinsynth.fingerprint import program_sha256
from clinsynth.llm.compiled import default_compiled, load_compiled
from clinsynth.model.classifier import SignsClassifier
from tests.conftest import ad_task, ad_taxonomy

pytestmark = pytest.mark.integration


def test_quick_main_job_makes_silver_bronze_report_and_a_usable_model(tmp_path: Path, capsys):
    pytest.importorskip("xllamacpp")
    assert main(["run", "--quick", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    taxonomy = ad_taxonomy()

    silver = read_records(tmp_path / "silver.jsonl", taxonomy)
    assert 1 <= len(silver) <= 6
    assert all(r.source == "silver" and r.provenance.lm.startswith("local/") for r in silver)

    bronze = read_records(tmp_path / "bronze.jsonl", taxonomy)  # may be small: the round trip drops drift
    targets = {r.provenance.attributes["target"] for r in bronze}
    assert targets <= {*ad_task().quick_categories, "NONE"}
    report = (tmp_path / "bronze.jsonl.report.json").read_text()
    assert '"generated"' in report
    # The committed compiled generator is used by default: every call records its hash.
    generator_path = default_compiled(ad_task(), "label_to_data", LMSpec("local"))
    assert generator_path is not None
    generator = load_compiled(LabelToData(taxonomy), generator_path, taxonomy)
    calls = [row for _, row in iter_jsonl(side_path(tmp_path / "bronze.jsonl", "calls.jsonl"))]
    assert calls and {c["program_sha256"] for c in calls} == {program_sha256(generator, taxonomy.guideline_text)}

    md = (tmp_path / "report" / "augmentation.md").read_text()
    for system in ("| gold ", "| gold+silver ", "| gold+bronze ", "keyword lexicon", "tf-idf + LR"):
        assert system in md, system
    assert (tmp_path / "report" / "augmentation_per_category.png").stat().st_size > 0
    summary = json.loads((tmp_path / "report" / "augmentation.json").read_text())
    assert summary["folds"] == 2 and all("vs_gold" in s for s in summary["systems"] if s["system"] != "gold")

    # The default model is trained on the mix cross-validation chose, and closes the report on gold test.
    model = SignsClassifier.load(tmp_path / "model", taxonomy)
    assert model.info.mix == best_mix(summary) and 0 <= model.info.test_scores["micro_f1"] <= 1
    assert f"| default model ({model.info.mix})" in md
    assert len(model.predict(["MMSE 24/30 today."])) == 1
    # The summary quotes the report's gold-test line (repeats of train or dev left out); the card scores the same set.
    test_row = next(s for s in summary["test"]["systems"] if s["system"] == summary["test"]["default"])
    assert model.info.test_scores["n"] == summary["test"]["sentences"]
    assert model.info.test_scores["micro_f1"] == pytest.approx(test_row["micro_f1"])
    assert f"default model micro / macro F1 {test_row['micro_f1']:.3f} / {test_row['macro_f1']:.3f}" in out
    for step in ("programs", "silver", "bronze", "experiment", "default model", "report"):
        assert f"| {step}" in out, step

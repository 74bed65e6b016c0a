"""The augmentation suite on a tiny two-category task: every mix x seed, baselines, reports, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clinsynth.evals import augmentation

from clinsynth.data.mixes import MixSources, best_mix
from clinsynth.data.records import Provenance, Record, write_records
from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.errors import DataError
from clinsynth.model.classifier import TrainingBudget
from tests.mini_data import write_gold

BRONZE = ["Febrile at 38.7 C.", "Temperature up to 39.5.", "Wet cough at night.", "Coughs when lying down."]


def _experiment(tmp_path: Path) -> augmentation.Experiment:
    write_gold(tmp_path / "gold")
    prov = Provenance(lm="x", program="p", program_sha256="0" * 64, attributes={"target": "FEVER"})
    bronze = [
        Record(f"b{i}", t, ["FEVER" if i < 2 else "COUGH"], "bronze", provenance=prov) for i, t in enumerate(BRONZE)
    ]
    write_records(tmp_path / "bronze.jsonl", bronze)
    return augmentation.Experiment(
        mixes=("gold", "gold+bronze"),
        seeds=(0, 1),
        budget=TrainingBudget(max_steps=2, batch_size=8),
        sources=MixSources(gold_dir=tmp_path / "gold", bronze=tmp_path / "bronze.jsonl", silver=tmp_path / "no"),
        work_dir=tmp_path / "work",
        labeler_report=None,
    )


def test_experiment_reports_every_mix_seed_and_baseline_then_resumes(tmp_path, mini_taxonomy_path, monkeypatch):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    experiment = _experiment(tmp_path)
    out = tmp_path / "reports"
    summary = augmentation.run(experiment, taxonomy, out, "test")

    systems = {s["system"]: s for s in summary["systems"]}
    assert set(systems) == {"gold", "gold+bronze", "keyword lexicon", "tf-idf + LR (gold)", "frozen MiniLM + LR (gold)"}
    assert systems["gold"]["runs"] == 2 and systems["gold+bronze"]["runs"] == 2
    assert systems["gold+bronze"]["n_train"] == systems["gold"]["n_train"] + len(BRONZE)
    for s in systems.values():
        assert set(s["per_category"]) == {"FEVER", "COUGH"}
        mean, spread = s["micro_f1"]
        assert 0 <= mean <= 1 and spread >= 0
    counts = summary["analysis"]["train_counts"]
    assert counts["gold+bronze"]["FEVER"] == counts["gold"]["FEVER"] + 2
    assert set(summary["analysis"]["shift"]) == {"gold", "bronze"}
    for name in ("augmentation_split.md", "augmentation_split.html", "augmentation_split.json",
                 "augmentation_split_summary.png",
                 "augmentation_split_per_category.png"):  # fmt: skip
        assert (out / name).stat().st_size > 0, name
    md = (out / "augmentation_split.md").read_text()
    assert "gold+bronze" in md and "Per-category F1" in md and "Distribution shift" in md
    assert len(list((tmp_path / "work" / "runs").glob("*.json"))) == 4

    # A rerun reuses every finished training run.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(augmentation, "train_mix_run", no_training)
    experiment.baselines = False
    again = augmentation.run(experiment, taxonomy, out, "test")
    assert {s["system"]: s["micro_f1"] for s in again["systems"]} == {
        k: systems[k]["micro_f1"] for k in ("gold", "gold+bronze")
    }
    assert json.loads((out / "augmentation_split.json").read_text())["command"] == "test"


def test_best_mix_is_chosen_on_dev_not_test():
    summary = {
        "systems": [
            {"system": "gold", "kind": "mix", "dev_micro_f1": (0.6, 0.0), "micro_f1": (0.9, 0.0)},
            {"system": "gold+bronze", "kind": "mix", "dev_micro_f1": (0.7, 0.0), "micro_f1": (0.5, 0.0)},
            {"system": "keyword lexicon", "kind": "baseline", "micro_f1": (0.95, 0.0)},
        ]
    }
    assert best_mix(summary) == "gold+bronze"


def test_a_missing_source_fails_before_any_training(tmp_path, mini_taxonomy_path, monkeypatch):
    taxonomy = load_taxonomy(mini_taxonomy_path)
    experiment = _experiment(tmp_path)
    experiment.mixes = ("gold", "gold+silver")
    monkeypatch.setattr(augmentation, "train_mix_run", lambda *a, **k: pytest.fail("trained before checking data"))
    with pytest.raises(DataError, match="make silver"):
        augmentation.run(experiment, taxonomy, tmp_path / "r", "test")


def test_cross_validation_decides_the_best_mix_when_there_is_one():
    cv_summary = {
        "folds": 3,
        "systems": [
            {"system": "gold", "kind": "mix", "micro_f1": [0.70, 0.01], "macro_f1": [0.50, 0.02]},
            {"system": "gold+bronze", "kind": "mix", "micro_f1": [0.69, 0.01], "macro_f1": [0.58, 0.02]},
            {"system": "keyword lexicon", "kind": "baseline", "micro_f1": [0.9, 0.0], "macro_f1": [0.9, 0.0]},
        ],
    }
    assert best_mix(cv_summary) == "gold+bronze"

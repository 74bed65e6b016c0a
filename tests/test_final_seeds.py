"""The default model's test line over training seeds: each seed trained once as the default model
is, a model trained the same way reused, every seed scored beside the rule list."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import pytest
from clinsynth.evals import final_seeds

from clinsynth.data.mixes import MixSources
from clinsynth.data.task import load_task
from clinsynth.fingerprint import file_sha256
from clinsynth.model.classifier import SignsClassifier
from clinsynth.model.train import TrainConfig, check_settings, mix_files, rechecked, trained_as
from tests.conftest import TWO_CATEGORY_YAML, write_task
from tests.mini_data import write_gold

RULES = "about: test\ncategories:\n  FEVER:\n    cues: ['\\bfever\\b']\n  COUGH:\n    cues: ['\\bcough']\n"


@pytest.fixture
def task(tmp_path: Path):
    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    root = write_task(tmp_path / "task", taxonomy=tmp_path / "t.yaml", gold=write_gold(tmp_path / "gold"))
    (root / "rules.yaml").write_text(RULES)
    return load_task(root)


def write_card(task, config: TrainConfig, out: Path) -> None:
    """The provenance part of a saved model's card, as ``clinsynth.model.train.train`` writes it."""
    out.mkdir(parents=True, exist_ok=True)
    files = {task.relative(f): file_sha256(f) for f in mix_files(MixSources.for_task(task), config.mix)}
    card = {"labels": list(task.taxonomy.names), "thresholds": {}, "mix": config.mix, "seed": config.seed,
            "budget": asdict(config.budget), "data_files": files}
    (out / "clinsynth.json").write_text(json.dumps(card))


def test_a_model_is_trained_as_a_config_says_only_with_its_mix_seed_budget_and_data(task, tmp_path):
    config = TrainConfig(mix="gold", seed=1)
    write_card(task, config, tmp_path / "m")
    assert trained_as(tmp_path / "m", task, config)
    assert not trained_as(tmp_path / "m", task, TrainConfig(mix="gold", seed=2))
    assert not trained_as(tmp_path / "none", task, config)
    with (task.gold_dir / "train.jsonl").open("a") as f:  # the gold changed since: retrain
        f.write(json.dumps({"id": "new", "text": "Fever again.", "labels": ["FEVER"], "note_id": "n99"}) + "\n")
    assert not trained_as(tmp_path / "m", task, config)


def test_a_moved_llm_check_bar_rewrites_the_card_of_a_model_whose_student_is_the_same(task, tmp_path):
    def fit_bar(below: float) -> None:  # as python -m evals.run llm-check writes its report
        task.reports_dir.mkdir(parents=True, exist_ok=True)
        report = {"adopted": {"gold": True}, "below": {"gold": below}}
        (task.reports_dir / "llm-check.json").write_text(json.dumps(report))

    config = TrainConfig(mix="gold+rules", seed=1, llm_check=True)
    fit_bar(0.8)
    write_card(task, config, tmp_path / "m")
    card = json.loads((tmp_path / "m" / "clinsynth.json").read_text())
    card["llm_check"] = check_settings(task, config)
    (tmp_path / "m" / "clinsynth.json").write_text(json.dumps(card))
    assert trained_as(tmp_path / "m", task, config)

    fit_bar(0.9)
    assert not trained_as(tmp_path / "m", task, config)
    assert rechecked(tmp_path / "m", task, TrainConfig(mix="gold+rules", seed=2, llm_check=True)) is None
    assert json.loads((tmp_path / "m" / "clinsynth.json").read_text())["llm_check"]["below"] == 0.8  # untouched
    assert rechecked(tmp_path / "m", task, config).llm_check["below"] == 0.9
    assert json.loads((tmp_path / "m" / "clinsynth.json").read_text())["llm_check"]["below"] == 0.9
    assert "with a score under 0.9" in (tmp_path / "m" / "README.md").read_text()
    assert trained_as(tmp_path / "m", task, config)


class _Model:
    """A saved model that labels as the rule list does; the seed-1 one also calls every fever a cough."""

    def __init__(self, seed: int, rules) -> None:
        self.seed, self.rules = seed, rules
        self.info = type("Info", (), {"hybrid": {"threshold": 0.5 + seed / 10}})()

    def predict(self, texts: list[str]) -> list[list[str]]:
        found = self.rules.predict(texts)
        return [sorted({*labels, "COUGH"}) if self.seed == 1 and "fever" in t else labels
                for t, labels in zip(texts, found, strict=True)]  # fmt: skip


def test_each_seed_is_trained_once_scored_beside_the_rule_list_and_reused_on_a_rerun(task, tmp_path, monkeypatch):
    trained: list[int] = []

    def fake_train(t, config, out):
        trained.append(config.seed)
        write_card(t, config, out)

    monkeypatch.setattr(final_seeds, "train", fake_train)
    monkeypatch.setattr(SignsClassifier, "load", staticmethod(
        lambda path, taxonomy=None: _Model(json.loads((Path(path) / "clinsynth.json").read_text())["seed"],
                                           task.rules)))  # fmt: skip
    out = tmp_path / "report"
    path, summary = final_seeds.write(task, (0, 1), out, "python -m evals.run final-seeds", models_dir=tmp_path / "m")
    assert trained == [0, 1] and summary["mix"] == "gold"
    rows = {r["seed"]: r for r in summary["rows"]}
    assert rows[0]["test"]["vs_rules"]["micro_f1"]["diff"] == pytest.approx(0.0)  # seed 0 is the rule list
    assert rows[1]["test"]["micro_f1"] < rows[0]["test"]["micro_f1"]  # seed 1's extra coughs are wrong
    assert rows[1]["test"]["vs_rules"]["micro_f1"]["diff"] < 0
    assert rows[1]["threshold"] == pytest.approx(0.6)
    pooled = summary["pooled"]["test"]
    assert pooled["micro_f1"] == pytest.approx((rows[0]["test"]["micro_f1"] + rows[1]["test"]["micro_f1"]) / 2)
    assert pooled["sd"]["micro_f1"] > 0
    md = path.read_text()
    assert "| all " in md and "rule list" in md and "chooses nothing" in md
    # A rerun trains nothing: both models are trained as the configs say.
    _, again = final_seeds.write(task, (0, 1), out, "python -m evals.run final-seeds", models_dir=tmp_path / "m")
    assert trained == [0, 1] and all(r["reused"] for r in again["rows"])


def test_the_report_says_how_the_seeds_models_ask_the_llm_as_the_default_model_does():
    assert final_seeds.check_words({"llm_check": False}) == ""
    every = final_seeds.check_words({"llm_check": True, "llm_check_below": None})
    assert every == " with its LLM check on the additions"
    assert final_seeds.check_words({"llm_check": True, "llm_check_below": 0.8}).endswith("scored under 0.8")


def test_the_main_job_reuses_a_model_trained_the_same_way_and_retrains_one_that_is_not(task, tmp_path, monkeypatch):
    from clinsynth.model import train as train_module

    trained = []

    def fake_train(task, config, out=None):  # writes the card train would write, without minutes of SetFit
        trained.append(config.seed)
        write_card(task, config, out)
        card = json.loads((out / "clinsynth.json").read_text())
        card["test_scores"] = {"sha256": file_sha256(task.gold_dir / "test.jsonl")}
        (out / "clinsynth.json").write_text(json.dumps(card))
        info = SimpleNamespace(dev_scores={"micro_f1": 0.5})
        return SimpleNamespace(classifier=SimpleNamespace(info=info))

    monkeypatch.setattr(train_module, "train", fake_train)
    config = TrainConfig(mix="gold", seed=3)
    assert train_module.ensure_trained(task, config, tmp_path / "m")[1] is False and trained == [3]
    info, reused = train_module.ensure_trained(task, config, tmp_path / "m")
    assert reused and info.seed == 3 and trained == [3]
    assert train_module.ensure_trained(task, TrainConfig(mix="gold", seed=4), tmp_path / "m")[1] is False
    assert trained == [3, 4]
    with (task.gold_dir / "test.jsonl").open("a") as f:  # the card's test scores are stale now: retrain
        f.write(json.dumps({"id": "t99", "text": "Cough today.", "labels": ["COUGH"], "note_id": "n98"}) + "\n")
    assert train_module.ensure_trained(task, TrainConfig(mix="gold", seed=4), tmp_path / "m")[1] is False
    assert trained == [3, 4, 4]
    assert train_module.ensure_trained(task, TrainConfig(mix="gold", seed=4), tmp_path / "m")[1] is True

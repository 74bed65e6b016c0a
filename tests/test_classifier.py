"""The SetFit classifier: label matrix, imbalance handling, thresholds, training, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clinsynth.errors import ClinsynthError
from clinsynth.model.classifier import (
    META_FILE,
    MIN_DEV_POSITIVES,
    SignsClassifier,
    label_matrix,
    oversample_minority,
    tune_thresholds,
)
from tests.conftest import ad_taxonomy


def test_label_matrix_adds_a_none_column():
    m = label_matrix([["B"], [], ["A", "B"]], ["A", "B"])
    assert m.tolist() == [[0, 1, 0], [0, 0, 1], [1, 1, 0]]


def test_oversampling_lifts_rare_categories_and_leaves_absent_ones_alone():
    texts = ["a1", "a2", "a3", "a4", "b1", "none"]
    matrix = label_matrix([["A"]] * 4 + [["B"], []], ["A", "B", "C"])
    out_texts, out_matrix = oversample_minority(texts, matrix, 3, np.random.default_rng(0))
    assert out_texts[:6] == texts  # originals kept, in order
    counts = out_matrix.sum(axis=0).tolist()
    assert counts == [4, 3, 0, 3]  # B and NONE raised to 3, A untouched, absent C stays 0
    assert out_texts.count("b1") == 3


def test_thresholds_maximise_dev_f1_and_fall_back_with_few_positives():
    rng = np.random.default_rng(0)
    gold = np.zeros((40, 2), dtype=int)
    gold[:10, 0] = 1  # A: 10 positives, scored 0.3-0.4; negatives below 0.25
    gold[0, 1] = 1  # B: one positive
    scores = np.zeros((40, 2))
    scores[:10, 0] = rng.uniform(0.3, 0.4, 10)
    scores[10:, 0] = rng.uniform(0.0, 0.25, 30)
    scores[:, 1] = 0.2
    t = tune_thresholds(scores, gold, ["A", "B"])
    assert 0.25 < t["A"] <= 0.3
    assert MIN_DEV_POSITIVES > 1 and t["B"] == 0.5


@pytest.fixture
def trained(mini_trained):
    return mini_trained


def test_training_fits_the_training_sentences(trained):
    taxonomy, train, classifier = trained
    predicted = classifier.predict([r.text for r in train])
    exact = sum(set(p) == set(r.labels) for p, r in zip(predicted, train, strict=True))
    assert exact / len(train) >= 0.8
    assert classifier.info.train_counts == {"FEVER": 10, "COUGH": 10, "NONE": 8}
    assert classifier.info.train_sources == {"gold": 26} and classifier.info.train_seconds > 0
    scores = classifier.scores(["Febrile to 39 C."])
    assert scores.shape == (1, 2) and 0 <= scores.min() and scores.max() <= 1


def test_save_and_load_give_the_same_predictions_and_a_model_card(trained, tmp_path: Path):
    taxonomy, train, classifier = trained
    texts = [r.text for r in train]
    classifier.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / META_FILE).read_text())
    assert meta["labels"] == ["FEVER", "COUGH"] and set(meta["thresholds"]) == {"FEVER", "COUGH"}
    # What plain SetFit reads: the category names (issue 27).
    assert json.loads((tmp_path / "model" / "config_setfit.json").read_text())["labels"] == ["FEVER", "COUGH"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "FEVER" in card and "training mix" in card and "threshold" in card
    from dataclasses import replace

    from clinsynth.model.classifier import model_card

    scored = replace(classifier.info, test_scores={"n": 5, "micro_f1": 0.5, "left_out": 2})
    assert "2 test sentences whose text is also in gold train or dev" in model_card(scored)
    assert "left out" not in model_card(replace(classifier.info, test_scores={"n": 5, "micro_f1": 0.5}))
    loaded = SignsClassifier.load(tmp_path / "model", taxonomy)
    assert np.allclose(loaded.scores(texts), classifier.scores(texts), atol=1e-5)
    assert loaded.predict(texts) == classifier.predict(texts)


def test_loading_checks_the_taxonomy_and_the_directory(trained, tmp_path: Path):
    _, _, classifier = trained
    classifier.save(tmp_path / "model")
    with pytest.raises(ClinsynthError, match="trained for labels"):
        SignsClassifier.load(tmp_path / "model", ad_taxonomy())
    with pytest.raises(ClinsynthError, match="not a clinsynth classifier"):
        SignsClassifier.load(tmp_path)


def test_training_needs_data(trained):
    taxonomy, _, _ = trained
    with pytest.raises(ClinsynthError, match="no training sentences"):
        SignsClassifier.train([], taxonomy)


def test_an_encoder_option_changes_the_run_key_only_when_set(tmp_path: Path):
    from dataclasses import asdict

    from clinsynth.model.classifier import TrainingBudget

    default = TrainingBudget()
    later = ("encoder", "rule_misses", "rule_hints")
    assert default.key() == {k: v for k, v in asdict(default).items() if k not in later}  # cached runs stay valid
    (tmp_path / "enc").mkdir()
    (tmp_path / "enc" / "modules.json").write_text("[]")
    other = TrainingBudget(encoder=str(tmp_path / "enc"))
    assert other.key()["encoder"] == str(tmp_path / "enc") and other.key() != default.key()
    with pytest.raises(ClinsynthError, match="not a sentence-transformers folder"):
        TrainingBudget(encoder=str(tmp_path))


def test_a_hybrid_model_saves_its_stack_and_rule_list_and_loads_to_the_same_predictions(trained, tmp_path: Path):
    import copy

    from clinsynth.data.rules import load_rules
    from clinsynth.model.classifier import RULES_FILE
    from tests.mini_data import records

    taxonomy, train, classifier = trained
    hybrid = SignsClassifier(classifier.model, copy.deepcopy(classifier.info))
    rules_path = tmp_path / "rules.yaml"
    # A rule only for a word the training sentences never use, so only the rule can find it.
    rules_path.write_text("about: t\ncategories:\n  COUGH:\n    cues: ['\\bwheez\\w*']\n", encoding="utf-8")
    rules = load_rules(rules_path, taxonomy.names)
    hybrid.stack_with_rules(rules, records("dev"))
    assert set(hybrid.info.hybrid) == {"threshold", "use_rule", "respect_scope"} and hybrid.info.rules_sha256
    texts = ["Wheezing at night.", "Febrile to 39 C.", "Abdomen soft."]
    assert "COUGH" in hybrid.predict(texts)[0]
    with pytest.raises(ClinsynthError, match="pass the texts"):
        hybrid.decide(hybrid.scores(texts))
    hybrid.save(tmp_path / "model")
    rules_path.write_text("about: edited\ncategories:\n  FEVER:\n    cues: ['x']\n", encoding="utf-8")
    assert (tmp_path / "model" / RULES_FILE).read_text(encoding="utf-8").startswith("about: t")
    loaded = SignsClassifier.load(tmp_path / "model", taxonomy)
    assert loaded.predict(texts) == hybrid.predict(texts)


def test_masked_cells_do_not_count_in_the_loss():
    """Training on what the rule list misses: a cell the mask leaves out never moves the weights,
    so flipping its target changes nothing, while flipping a kept target does."""
    import torch

    from clinsynth.model.classifier import TrainingBudget, _base_model
    from clinsynth.model.finetune import fine_tune

    texts = ["Febrile to 39 C.", "Dry cough for a week.", "Abdomen soft.", "Fever and cough.", "No complaints."]
    matrix = np.asarray([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [0, 0, 1]])
    mask = np.ones_like(matrix)
    mask[[0, 3], 0] = 0  # the rule list labels FEVER in these two sentences

    def head_after(targets: np.ndarray, with_mask: np.ndarray | None) -> torch.Tensor:
        model = _base_model(TrainingBudget(), seed=0, differentiable=3)
        fine_tune(model, texts, targets, epochs=1, batch_size=5, learning_rate=1e-4, head_learning_rate=1e-2,
                  warmup=0.0, weight_cap=10.0, max_length=32, seed=0, show_progress=False,
                  mask=with_mask)  # fmt: skip
        return torch.cat([p.detach().flatten() for p in model.model_head.parameters()])

    flipped = matrix.copy()
    flipped[[0, 3], 0] = 0  # targets only in the masked cells differ
    assert torch.allclose(head_after(matrix, mask), head_after(flipped, mask))
    assert not torch.allclose(head_after(matrix, None), head_after(flipped, None))


def test_rule_misses_needs_the_rule_list_and_leaves_earlier_run_keys_alone(trained):
    from clinsynth.model.classifier import TrainingBudget

    taxonomy, train, _ = trained
    with pytest.raises(ClinsynthError, match="needs the task's rule list"):
        SignsClassifier.train(train, taxonomy, budget=TrainingBudget(rule_misses=True), show_progress=False)
    assert "rule_misses" not in TrainingBudget().key()  # runs cached before the field existed stay valid
    assert TrainingBudget(rule_misses=True).key()["rule_misses"] is True


def test_a_rule_hints_student_reads_the_rule_lists_verdict_before_each_sentence(trained, tmp_path: Path):
    from clinsynth.data.rules import load_rules
    from clinsynth.model.classifier import RULES_FILE, TrainingBudget, hinted_texts
    from tests.mini_data import records

    taxonomy, train, _ = trained
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("about: t\ncategories:\n  COUGH:\n    cues: ['\\bwheez\\w*']\n", encoding="utf-8")
    rules = load_rules(rules_path, taxonomy.names)
    texts = ["Wheezing at night.", "Abdomen soft."]
    assert hinted_texts(texts, rules, taxonomy.names) == ["rules: cough. Wheezing at night.",
                                                          "rules: none. Abdomen soft."]  # fmt: skip
    assert hinted_texts(texts, None, taxonomy.names) == texts

    with pytest.raises(ClinsynthError, match="needs the task's rule list"):
        SignsClassifier.train(train, taxonomy, budget=TrainingBudget(rule_hints=True), show_progress=False)
    with pytest.raises(ClinsynthError, match="not combined with rule_misses"):
        SignsClassifier.train(train, taxonomy, budget=TrainingBudget(rule_hints=True, rule_misses=True),
                              show_progress=False, rules=rules)  # fmt: skip
    assert "rule_hints" not in TrainingBudget().key()  # runs cached before the field existed stay valid

    budget = TrainingBudget(epochs=2, batch_size=8, learning_rate=2e-4, head_learning_rate=2e-2, rule_hints=True)
    student = SignsClassifier.train(train, taxonomy, dev=records("dev"), budget=budget, show_progress=False,
                                    rules=rules)  # fmt: skip
    plain = SignsClassifier(student.model, student.info)  # the same weights without its rule list
    with pytest.raises(ClinsynthError, match="needs its rules"):
        plain.scores(texts)
    # It scores the hinted sentences, not the bare ones.
    from clinsynth.model.classifier import _probabilities

    hinted = _probabilities(student.model, hinted_texts(texts, rules, taxonomy.names))[:, :2]
    assert np.allclose(student.scores(texts), hinted, atol=1e-6)
    assert not np.allclose(student.scores(texts), _probabilities(student.model, texts)[:, :2], atol=1e-6)
    # Saved, it keeps its own copy of the list and scores the same.
    student.save(tmp_path / "model")
    assert (tmp_path / "model" / RULES_FILE).is_file()
    from clinsynth.fingerprint import file_sha256

    assert student.info.rules_sha256 == file_sha256(rules_path)  # the list it read, on its card
    loaded = SignsClassifier.load(tmp_path / "model", taxonomy)
    assert np.allclose(loaded.scores(texts), student.scores(texts), atol=1e-5)

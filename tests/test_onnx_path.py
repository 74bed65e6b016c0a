"""The fast inference path: ONNX export of a trained classifier, its scores, and predict's backend choice."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the fast path needs the 'scale' extra")

from clinsynth.app.cli import main  # noqa: E402
from clinsynth.errors import ClinsynthError  # noqa: E402
from clinsynth.model.onnx_path import (  # noqa: E402
    MANIFEST,
    OnnxModel,
    choose_default,
    export_onnx,
    load_classifier,
    read_manifest,
    require_onnxruntime,
)
from tests.conftest import TWO_CATEGORY_YAML, write_task  # noqa: E402
from tests.mini_data import write_gold  # noqa: E402

# Unsorted lengths, a repeat, untrimmed whitespace and one sentence far over max_length (64 tokens).
TEXTS = [
    "Productive cough with green sputum and fever of 39 C since Monday, worse at night.",
    "Cough.",
    "  Febrile to 39 C overnight.  ",
    "Follow up in two weeks.",
    "Cough.",
    "He had a persistent dry cough " + "and then some more coughing " * 30,
    "Skin is warm and dry.",
]


@pytest.fixture(scope="module")
def exported(mini_trained, tmp_path_factory: pytest.TempPathFactory):
    """The mini classifier saved, then exported (fp32 + int8) through the CLI, with a task to score dev on."""
    root = tmp_path_factory.mktemp("onnx")
    _, _, classifier = mini_trained
    model_dir = classifier.save(root / "model")
    tax_path = root / "mini.yaml"
    tax_path.write_text(TWO_CATEGORY_YAML)
    task_dir = write_task(root / "task", taxonomy=tax_path, gold=write_gold(root / "gold"))
    assert main(["export-onnx", "--task", str(task_dir), "--model", str(model_dir), "--quantize"]) == 0
    return model_dir, task_dir, classifier


def test_export_writes_both_graphs_and_a_manifest_with_dev_scores(exported):
    model_dir, _, _ = exported
    manifest = read_manifest(model_dir)
    assert manifest is not None and manifest["head"] == "differentiable" and manifest["max_length"] == 64
    assert set(manifest["files"]) == {"fp32", "int8"} and set(manifest["dev_scores"]) == {"fp32", "int8"}
    assert manifest["default"] in ("fp32", "int8")
    assert {p.name for p in (model_dir / "onnx").iterdir()} == {
        "model.onnx", "model.int8.onnx", "tokenizer.json", MANIFEST
    }  # fmt: skip


def test_fp32_scores_equal_the_torch_scores_in_input_order(exported):
    model_dir, _, classifier = exported
    fast, backend = load_classifier(model_dir, backend="onnx", variant="fp32")
    assert backend == "onnx-fp32"
    expected = classifier.scores(TEXTS)
    np.testing.assert_allclose(fast.scores(TEXTS), expected, atol=1e-4)
    # Any batch size: length sorting and padding change nothing, rows come back in order.
    np.testing.assert_allclose(fast.model.predict_proba(TEXTS, batch_size=2)[:, :2], expected, atol=1e-4)
    np.testing.assert_allclose(fast.scores(TEXTS[1:2]), expected[1:2], atol=1e-4)
    assert fast.predict(TEXTS) == classifier.predict(TEXTS)  # the classifier's own thresholds and decide
    assert fast.scores([]).shape == (0, 2)


def test_int8_gives_the_same_labels_on_most_sentences(exported):
    from tests.mini_data import records

    model_dir, _, classifier = exported
    fast, backend = load_classifier(model_dir, backend="onnx", variant="int8")
    assert backend == "onnx-int8"
    texts = [r.text for split in ("train", "dev", "test") for r in records(split)] + TEXTS
    same = sum(a == b for a, b in zip(fast.predict(texts), classifier.predict(texts), strict=True))
    assert same >= 0.9 * len(texts)
    assert np.abs(fast.scores(texts) - classifier.scores(texts)).max() < 0.1


def test_int8_is_the_default_only_within_the_dev_loss_allowed_in_micro_and_macro_f1(exported, tmp_path: Path):
    model_dir = shutil.copytree(exported[0], tmp_path / "model")

    def dev(fp32: tuple[float, float], int8: tuple[float, float] | None = None) -> dict:
        scores = {"fp32": {"micro_f1": fp32[0], "macro_f1": fp32[1]}}
        if int8:
            scores["int8"] = {"micro_f1": int8[0], "macro_f1": int8[1]}
        return scores

    assert choose_default(model_dir, dev((0.800, 0.700), (0.796, 0.697))) == "int8"
    assert choose_default(model_dir, dev((0.800, 0.700), (0.790, 0.700))) == "fp32"  # micro lost
    assert choose_default(model_dir, dev((0.800, 0.700), (0.800, 0.690))) == "fp32"  # macro lost
    assert read_manifest(model_dir)["dev_scores"]["int8"] == {"micro_f1": 0.8, "macro_f1": 0.69}
    assert choose_default(model_dir, dev((0.800, 0.700))) == "fp32"  # no int8 graph


def test_cli_predict_uses_the_export_when_present_and_torch_when_asked(exported, tmp_path: Path, capsys):
    model_dir, task_dir, _ = exported
    (tmp_path / "in.txt").write_text("\n".join(t.strip() for t in TEXTS[:4]) + "\n")
    rows = {}
    default = read_manifest(model_dir)["default"]
    for backend, expected in (("auto", f"onnx-{default}"), ("torch", "torch"), ("onnx", f"onnx-{default}")):
        out = tmp_path / f"{backend}.jsonl"
        args = ["predict", "--task", str(task_dir), "--model", str(model_dir), "--input", str(tmp_path / "in.txt")]
        assert main([*args, "--out", str(out), "--backend", backend]) == 0
        assert f"backend {expected}" in capsys.readouterr().out
        rows[backend] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows["auto"]] == [r["text"] for r in rows["torch"]]


def test_without_an_export_auto_is_torch_and_onnx_is_an_error(mini_trained, tmp_path: Path):
    model_dir = mini_trained[2].save(tmp_path / "model")
    assert load_classifier(model_dir)[1] == "torch"
    with pytest.raises(ClinsynthError, match="clinsynth export-onnx"):
        load_classifier(model_dir, backend="onnx")
    with pytest.raises(ClinsynthError, match="unknown backend"):
        load_classifier(model_dir, backend="tensorrt")


def test_a_stale_export_is_never_used(exported, tmp_path: Path, caplog):
    model_dir = shutil.copytree(exported[0], tmp_path / "model")
    head = model_dir / "model_head.json"  # as if retrained in place (same settings, other bytes)
    head.write_text(json.dumps(json.loads(head.read_text())))
    with caplog.at_level(logging.WARNING, logger="clinsynth.model.onnx_path"):
        assert load_classifier(model_dir)[1] == "torch"
    assert "other weights" in caplog.text
    with pytest.raises(ClinsynthError, match="export it again"):
        OnnxModel(model_dir)


def test_a_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    with pytest.raises(ClinsynthError, match=r"'scale' extra"):
        require_onnxruntime()


def test_a_logistic_regression_head_runs_on_exported_embeddings(mini_trained, tmp_path: Path):
    from clinsynth.model.classifier import SignsClassifier, TrainingBudget
    from tests.mini_data import records

    taxonomy, train, _ = mini_trained
    # The contrastive recipe without contrastive steps: the bundled encoder + one LR head per category.
    budget = TrainingBudget(recipe="contrastive", max_steps=0)
    classifier = SignsClassifier.train(train, taxonomy, dev=records("dev"), budget=budget, show_progress=False)
    model_dir = classifier.save(tmp_path / "model")
    assert export_onnx(model_dir).head == "sklearn"
    fast, backend = load_classifier(model_dir)
    assert backend == "onnx-fp32"
    np.testing.assert_allclose(fast.scores(TEXTS), classifier.scores(TEXTS), atol=1e-4)

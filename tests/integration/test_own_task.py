"""A user's own task from a folder: init, replace taxonomy and gold, run --quick, predict.

The replacement is a different two-category task (fever, cough) than the template's, so
the run proves labels, prompts, mixes and the model come from the task folder alone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from clinsynth.app.cli import main
from clinsynth.data.records import read_records
from clinsynth.data.task import load_task
from clinsynth.model.classifier import SignsClassifier
from tests.conftest import TWO_CATEGORY_YAML
from tests.mini_data import write_gold

pytestmark = pytest.mark.integration

def test_init_replace_taxonomy_and_gold_then_quick_run_and_predict(tmp_path: Path, capsys):
    pytest.importorskip("xllamacpp")
    root = tmp_path / "fever_cough"
    assert main(["init", str(root)]) == 0
    # Replace the template's task with another one: taxonomy, gold, examples.
    (root / "taxonomy.yaml").write_text(TWO_CATEGORY_YAML)
    shutil.rmtree(root / "gold")
    write_gold(root / "gold")
    config = (root / "clinsynth.toml").read_text()
    config = config.replace('"SMOKING", "ALCOHOL_USE"', '"FEVER", "COUGH"')
    (root / "clinsynth.toml").write_text(config)
    # The template's rule list names the template's categories: a run says so, naming the file.
    assert main(["run", "--quick", "--task", str(root)]) == 2
    assert "rules.yaml" in capsys.readouterr().err
    rules = "about: by hand\ncategories:\n  FEVER:\n    cues: ['\\bfever\\b', '\\bfebrile\\b']\n"
    (root / "rules.yaml").write_text(rules + "  COUGH:\n    cues: ['\\bcough']\n")
    task = load_task(root)
    assert task.rules is not None and task.rules.labels("Febrile with a cough.") == ["FEVER", "COUGH"]
    assert task.taxonomy.names == ("FEVER", "COUGH") and task.quick_categories == ("FEVER", "COUGH")

    assert main(["run", "--quick", "--task", str(root)]) == 0
    out = capsys.readouterr().out
    for step in ("programs", "silver", "bronze", "experiment", "default model"):
        assert f"| {step}" in out, step
    quick = root / "outputs" / "quick"
    silver = read_records(quick / "silver.jsonl", task.taxonomy)  # labels validated against FEVER/COUGH
    assert silver and all(set(r.labels) <= {"FEVER", "COUGH"} for r in silver)
    model = SignsClassifier.load(quick / "model")
    assert model.labels == ["FEVER", "COUGH"]
    assert model.info.task == task.name

    # predict with the task: its default model is the one in the task's outputs.
    shutil.copytree(quick / "model", task.model_dir)
    src = tmp_path / "x.txt"
    src.write_text("Febrile to 39.4 C overnight.\nBowel sounds normal.\n")
    assert main(["predict", "--task", str(root), "--input", str(src), "--out", str(tmp_path / "y.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "y.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and set(rows[0]["scores"]) == {"FEVER", "COUGH"}

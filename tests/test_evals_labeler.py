import json
from pathlib import Path

import dspy
from dspy.utils import DummyLM

from clinsynth.lm import LMHandle
from clinsynth.privacy import Endpoint
from clinsynth.taxonomy import load_taxonomy
from evals import labeler
from evals.core import Solver, Task, evaluate


def test_evaluate_counts_failures_as_none_and_scores():
    taxonomy = load_taxonomy()
    task = Task("t", tuple(labeler.gold_task("dev", taxonomy, limit=4).records))
    gold = task.gold
    perfect = evaluate(task, Solver("oracle", lambda texts: [list(g) for g in gold]), taxonomy)
    assert perfect.scores["exact_match"] == 1.0 and perfect.failed == 0
    broken = evaluate(task, Solver("broken", lambda texts: [None] * len(texts)), taxonomy)
    assert broken.failed == 4
    assert broken.scores["exact_match"] == sum(1 for g in gold if not g) / 4


def test_labeler_suite_writes_json_and_markdown(tmp_path: Path, monkeypatch):
    adapter = dspy.JSONAdapter()
    handle = LMHandle(
        lm=DummyLM([{"categories": ["COGNITIVE_IMPAIRMENT"]}] * 3, adapter=adapter),
        adapter=adapter,
        endpoint=Endpoint("openai/d", "http://127.0.0.1:1/v1"),
        name="dummy",
    )
    monkeypatch.setattr(labeler, "make_lm", lambda *a, **k: handle)
    results = labeler.run(split="dev", limit=3, out_dir=tmp_path, command="cmd")
    assert [r.solver for r in results] == ["zero-shot"]
    payload = json.loads((tmp_path / "labeler.json").read_text())
    assert payload["lm"] == "dummy" and payload["results"][0]["scores"]["n"] == 3
    report = (tmp_path / "labeler.md").read_text()
    assert "| zero-shot" in report and "COGNITIVE_IMPAIRMENT" in report and "Command: `cmd`" in report

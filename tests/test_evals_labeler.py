import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import dspy
import pytest
from clinsynth.evals import labeler
from clinsynth.programs.data_to_label import DataToLabel
from dspy.utils import DummyLM

from clinsynth.data.privacy import Endpoint
from clinsynth.data.task import LMSpec, load_task
from clinsynth.errors import PrivacyError
from clinsynth.llm.compiled import compiled_path
from clinsynth.llm.lm import LMHandle
from clinsynth.model.metrics import multilabel_scores
from clinsynth.paths import PROJECT_ROOT
from tests.conftest import ad_task


def dummy_handle(answers: list[dict]) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(
        lm=DummyLM(answers, adapter=adapter),
        adapter=adapter,
        endpoint=Endpoint("openai/d", "http://127.0.0.1:1/v1"),
        name="dummy",
    )


@pytest.fixture
def no_lm(monkeypatch):
    """Fail the test if the session gets as far as building an LM."""
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may be built"))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def test_labeler_suite_writes_json_and_markdown(tmp_path: Path, task_dir: Path):
    handle = dummy_handle([{"categories": ["COGNITIVE_IMPAIRMENT"]}] * 3)
    task = load_task(task_dir)  # no compiled programs: zero-shot only
    results = labeler.run(task, split="dev", limit=3, out_dir=tmp_path, command="cmd", handle=handle)
    assert [r.solver for r in results] == ["zero-shot"]
    payload = json.loads((tmp_path / "labeler.json").read_text())
    assert payload["lm"] == "dummy" and payload["results"][0]["scores"]["n"] == 3
    assert {"id", "gold", "predicted", "confidence", "attempts"} <= set(payload["results"][0]["predictions"][0])
    report = (tmp_path / "labeler.md").read_text()
    assert "| zero-shot" in report and "COGNITIVE_IMPAIRMENT" in report and "Command: `cmd`" in report


def test_program_results_score_failures_as_none_and_count_them():
    task = ad_task()
    eval_task = labeler.gold_task("dev", task.taxonomy, task.gold_dir, limit=2)
    answers = [{"categories": ["COGNITIVE_IMPAIRMENT"]}] + [{"categories": ["NOT_A_LABEL"]}] * 3
    result = labeler.program_result("p", eval_task, DataToLabel(task.taxonomy), dummy_handle(answers))
    predicted = [p["predicted"] for p in result.predictions]
    assert predicted == [["COGNITIVE_IMPAIRMENT"], None] and result.failed == 1
    # A failed sentence is scored as NONE.
    assert result.scores == multilabel_scores(eval_task.gold, [["COGNITIVE_IMPAIRMENT"], []], task.taxonomy)


def test_the_suite_refuses_gold_on_a_remote_unapproved_labeller(task_dir: Path, tmp_path: Path, no_lm):
    task = load_task(task_dir)
    with pytest.raises(PrivacyError, match=r"\(role labeler\): gold dev"):
        labeler.run(task, LMSpec("openai/gpt-4o-mini"), split="dev", limit=2, out_dir=tmp_path)
    assert not (tmp_path / "labeler.json").exists()


def test_an_injected_handle_is_checked_for_the_compared_programs(task_dir: Path, tmp_path: Path):
    task = load_task(task_dir)
    # Remote, and no session cleared it for private data.
    handle = replace(dummy_handle([]), endpoint=Endpoint("openai/gpt-4o-mini"), role="labeler", policy=task.privacy)
    committed = compiled_path("data_to_label", "local/x")  # gold train demos
    with pytest.raises(PrivacyError, match="program compiled"):
        labeler.run(task, split="dev", limit=2, programs={"compiled": committed}, out_dir=tmp_path, handle=handle)


def _benchmark():
    spec = importlib.util.spec_from_file_location("labeler_cost", PROJECT_ROOT / "benchmarks" / "labeler_cost.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cost_benchmark_scores_with_the_shared_loop_and_checks_privacy_first(task_dir: Path, no_lm, capsys):
    bench = _benchmark()
    task = load_task(task_dir)
    records = task.gold(("dev",))["dev"][:2]
    program = DataToLabel(task.taxonomy)
    answers = [{"categories": []}] * 3  # warm-up and two sentences
    row = bench.run_system("naive", program, "json-full", task, LMSpec(), records, [], {}, handle=dummy_handle(answers))
    expected = multilabel_scores([r.labels for r in records], [[], []], task.taxonomy)
    assert row[0] == "naive" and len(row) == 7 and row[-2:] == [expected["micro_f1"], expected["binary_f1"]]
    # A remote unapproved labeller is refused before any LM starts (gold dev is private).
    committed = str(compiled_path("data_to_label", "local/x"))
    code = bench.main(["--task", str(task_dir), "--lm", "openai/gpt-4o-mini", "--n", "2", "--program", committed])
    assert code == 2 and "refusing to send private data" in capsys.readouterr().err

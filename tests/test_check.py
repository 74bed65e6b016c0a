"""``clinsynth check`` and the main job's first step: a task's files validated in seconds, before any LM work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinsynth.app.check import MIN_GOLD_PER_CATEGORY, check_task
from clinsynth.app.cli import main
from clinsynth.data.task import load_task
from clinsynth.errors import DataError
from tests.conftest import TWO_CATEGORY_YAML, write_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("task_dir", ["tasks/ad_signs", "tasks/sdoh"])
def test_the_bundled_tasks_pass_the_check(task_dir: str, capsys):
    assert main(["check", "--task", str(ROOT / task_dir)]) == 0
    out = capsys.readouterr().out
    for what in ("taxonomy", "gold", "whole test notes", "rule list", "silver", "bronze"):
        assert f"| {what} " in out
    assert "ready to run" in out


def _own_task(tmp_path: Path, rows: list[dict], extra: str = "") -> Path:
    (tmp_path / "t.yaml").write_text(TWO_CATEGORY_YAML)
    gold = tmp_path / "gold"
    gold.mkdir()
    for split in ("train", "dev", "test"):
        lines = [json.dumps({"source": "gold", "split": split, **r}) for r in rows if r.get("split", "train") == split]
        (gold / f"{split}.jsonl").write_text("".join(line + "\n" for line in lines))
    return write_task(tmp_path / "task", taxonomy=tmp_path / "t.yaml", gold=gold, extra=extra)


def test_a_template_quick_category_left_in_the_config_names_file_and_field(tmp_path: Path):
    rows = [{"id": "a", "text": "Febrile.", "labels": ["FEVER"], "note_id": "n1"}]
    task = load_task(_own_task(tmp_path, rows, '[examples]\nquick_categories = ["A", "B"]'))
    with pytest.raises(DataError) as err:
        check_task(task)
    assert "clinsynth.toml: field 'examples.quick_categories': unknown category 'A'" in str(err.value)


def test_a_bad_gold_label_stops_the_main_job_before_any_lm_work(tmp_path: Path, monkeypatch, capsys):
    """Issue 27: a bad gold label was found after 7.5 minutes of LLM work."""
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may start"))
    rows = [{"id": "a", "text": "Febrile.", "labels": ["FEVER"], "note_id": "n1"},
            {"id": "b", "text": "Coughing.", "labels": ["COUGHING"], "note_id": "n1"}]  # fmt: skip
    task = _own_task(tmp_path, rows)
    assert main(["run", "--quick", "--task", str(task), "--out-dir", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.jsonl:2: field 'labels'" in err and "COUGHING" in err
    assert not (tmp_path / "run").exists()


def test_a_small_gold_set_is_warned_about_per_category(tmp_path: Path, capsys):
    rows = [{"id": f"f{i}", "text": f"Febrile {i}.", "labels": ["FEVER"], "note_id": f"n{i}"} for i in range(9)]
    rows += [{"id": "c1", "text": "Coughing.", "labels": ["COUGH"], "note_id": "n1"}]
    task = _own_task(tmp_path, rows)
    warnings = check_task(load_task(task)).warnings
    assert len(warnings) == 1 and f"fewer than {MIN_GOLD_PER_CATEGORY}" in warnings[0]
    assert "COUGH 1" in warnings[0] and "FEVER" not in warnings[0]
    assert main(["check", "--task", str(task)]) == 0
    assert "warning: gold train has fewer" in capsys.readouterr().err


def test_ctrl_c_ends_with_one_line_saying_what_is_kept(monkeypatch, capsys):
    """Issue 27: Ctrl-C printed a 40-line traceback and no word on what was kept."""
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("clinsynth.app.check.check_task", interrupt)
    assert main(["check"]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err and err[0].startswith("interrupted: everything finished is kept") and "Traceback" not in "".join(err)

"""``clinsynth run``'s flags reach the main job: the training budget of its experiment and default
model, the LM steps' map settings, and the quick run's smaller defaults."""

from __future__ import annotations

from pathlib import Path

from clinsynth.app.cli import build_parser, run_config
from clinsynth.app.pipeline import QUICK_BUDGET, QUICK_MAX_FAILURES, MainJob
from clinsynth.data.task import load_task
from clinsynth.model.classifier import TrainingBudget


def config_for(task_dir: Path, *flags: str):
    args = build_parser().parse_args(["run", "--task", str(task_dir), *flags])
    return run_config(args, load_task(task_dir))


def test_defaults_leave_the_budget_to_the_job(task_dir: Path):
    full, quick = config_for(task_dir), config_for(task_dir, "--quick")
    assert full.budget is None and MainJob(load_task(task_dir), full).budget == TrainingBudget()
    assert MainJob(load_task(task_dir), quick).budget == QUICK_BUDGET
    assert full.map.max_failures == 0 and quick.map.max_failures == QUICK_MAX_FAILURES
    assert config_for(task_dir, "--quick", "--max-failures", "2").map.max_failures == 2


def test_budget_flags_train_the_experiment_and_the_default_model_their_way(task_dir: Path, tmp_path: Path):
    encoder = tmp_path / "enc"
    encoder.mkdir()
    (encoder / "modules.json").write_text("[]")
    config = config_for(task_dir, "--quick", "--encoder", str(encoder), "--epochs", "6", "--timeout", "9")
    assert config.budget == TrainingBudget(encoder=str(encoder), epochs=6)
    assert config.budget.changes() == {"encoder": str(encoder), "epochs": 6}
    assert MainJob(load_task(task_dir), config).budget is config.budget  # quick too: the user's choice wins
    assert config.map.timeout == 9

"""The task's cross-validated augmentation experiment: every mix (``evals.cv``), its whole-note
view where the task asks for it (``evals.whole_view``), and the report of both."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinsynth.evals.cv import CVSettings, run_experiment, task_cross_validation, task_test_line
from clinsynth.evals.whole_view import experiment_view

from clinsynth.data.mixes import MixSources


def cross_validate_task(task: Any, settings: CVSettings, out_dir: Path, command: str, *,
                        sources: MixSources | None = None, work_dir: Path | None = None,
                        model_dir: Path | None = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """The task's cross-validated augmentation report: every run (reusing finished ones), the
    gold-test line for its default model, ``augmentation.{md,html,json}`` under ``out_dir``;
    returns the Markdown path and the summary."""
    from clinsynth.evals.cv_report import write_report

    cv = task_cross_validation(task, settings, sources=sources, work_dir=work_dir)
    summary = run_experiment(cv)
    if settings.whole_view and task.rules is not None:
        view = experiment_view(task, cv, [row["system"] for row in summary["systems"]])
        if view is not None:
            summary["whole_view"] = view
    summary["test"] = task_test_line(task, task.gold(), model_dir or task.model_dir)
    return write_report(summary, task.taxonomy, out_dir, command), summary

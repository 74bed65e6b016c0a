"""The pieces of an eval suite: a task (data), solvers (systems) and a scorer.

As in inspect_ai: a task is a fixed set of samples; a solver maps sample texts to label
sets (``None`` for a sample it failed on); the scorer turns predictions into metrics. A
suite runs solvers on a task and writes JSON plus a readable report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinsynth.data.records import Record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.fingerprint import parts_sha256
from clinsynth.model.metrics import multilabel_scores


@dataclass(frozen=True)
class Task:
    name: str
    records: tuple[Record, ...]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    @property
    def gold(self) -> list[list[str]]:
        return [list(r.labels) for r in self.records]


@dataclass
class Solver:
    """A named system: ``solve(texts) -> [labels or None]``.

    A solver may fill ``details`` (one dict per text, e.g. confidence, attempts) while
    solving; the suite keeps them with the predictions.
    """

    name: str
    solve: Callable[[Sequence[str]], list[list[str] | None]]
    description: str = ""
    details: list[dict] = field(default_factory=list)


@dataclass
class Result:
    solver: str
    task: str
    scores: dict
    failed: int
    seconds: float
    predictions: list[dict] = field(default_factory=list)  # per sample: id, gold, predicted, details


def evaluate(task: Task, solver: Solver, taxonomy: Taxonomy) -> Result:
    """Run one solver on a task; a failed sample counts as predicting NONE and is reported."""
    started = time.monotonic()
    predictions = solver.solve(task.texts)
    seconds = time.monotonic() - started
    if len(predictions) != len(task.records):
        raise ValueError(f"solver {solver.name} returned {len(predictions)} predictions for {len(task.records)}")
    failed = sum(p is None for p in predictions)
    scored = [p if p is not None else [] for p in predictions]
    return Result(
        solver=solver.name,
        task=task.name,
        scores=multilabel_scores(task.gold, scored, taxonomy),
        failed=failed,
        seconds=seconds,
        predictions=[
            {"id": r.id, "gold": list(r.labels), "predicted": p, **(solver.details[i] if solver.details else {})}
            for i, (r, p) in enumerate(zip(task.records, predictions, strict=True))
        ],
    )


def run_key(*parts: Any) -> str:
    """A short content hash of what a trained run depends on: finished runs are stored under it."""
    return parts_sha256(*parts)[:16]


def mean_sd_text(pair: Sequence[float]) -> str:
    """``(mean, sd)`` as a report shows it: ``0.630 ± 0.031``."""
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; both 0 for none)."""
    if not values:
        return 0.0, 0.0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

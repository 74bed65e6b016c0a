"""What the eval suites share: the set a system is scored on, its result, run keys and mean ± sd."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from clinsynth.data.records import Record
from clinsynth.fingerprint import parts_sha256


@dataclass(frozen=True)
class EvalSet:
    """A fixed, named set of labelled samples a suite scores systems on."""

    name: str
    records: tuple[Record, ...]

    @property
    def texts(self) -> list[str]:
        return [r.text for r in self.records]

    @property
    def gold(self) -> list[list[str]]:
        return [list(r.labels) for r in self.records]


@dataclass
class Result:
    """One system's scores on an eval set; a sample it failed on counts as NONE and in ``failed``."""

    solver: str
    task: str
    scores: dict
    failed: int
    seconds: float
    predictions: list[dict] = field(default_factory=list)  # per sample: id, gold, predicted, details


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

"""What the eval suites share: the set a system is scored on, its result, run keys and mean ± sd."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinsynth.data.records import Record
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.fingerprint import parts_sha256

HEADLINE = ("micro_f1", "macro_f1", "binary_f1")
BOOTSTRAP_RESAMPLES = 1000


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


def headline_over_seeds(scores: Sequence[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Mean and sd over seeds of each headline metric, from one ``multilabel_scores`` result a seed."""
    return {m: mean_std([s[m] for s in scores]) for m in HEADLINE}


def per_category_over_seeds(scores: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Mean and sd over seeds of each category's F1 (an undefined F1 counts 0)."""
    return {c: mean_std([s["per_category"][c]["f1"] or 0.0 for s in scores]) for c in names}


def paired_ci(
    gold: Sequence[Sequence[str]],
    notes: Sequence[str],
    system: Sequence[Sequence[Sequence[str]]],
    reference: Sequence[Sequence[Sequence[str]]],
    taxonomy: Taxonomy,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per headline metric, the mean difference ``system - reference`` and its 95% bootstrap interval.

    Notes are resampled (sentences of a note are not independent). ``system`` and
    ``reference`` hold one prediction list per seed; each resample scores every seed on
    the same sentences and averages, so both seed noise and sample noise are in the interval.
    Each seed's outcomes are summed per note once; a resample is then a weighted sum of
    notes (``outcome_matrix``, ``headline_f1``), so a thousand resamples take a moment.
    """
    from scipy.stats import bootstrap

    from clinsynth.model.metrics import headline_f1, outcome_matrix

    names = list(taxonomy.names)
    note_ids = sorted(set(notes))
    index = {n: i for i, n in enumerate(note_ids)}
    by_note = np.zeros((len(note_ids), len(notes)))
    by_note[[index[n] for n in notes], np.arange(len(notes))] = 1.0

    def per_note(runs: Sequence[Sequence[Sequence[str]]]) -> list[np.ndarray]:
        return [by_note @ outcome_matrix(gold, run, names) for run in runs]

    system_notes, reference_notes = per_note(system), per_note(reference)

    def mean_scores(weights: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
        return np.mean([headline_f1(weights @ r, len(names)) for r in runs], axis=0)

    def difference(sample: np.ndarray, axis: int = -1) -> np.ndarray:
        # ``sample``: note indices, one resample per row; weights count how often each note was drawn.
        sample = np.atleast_2d(np.moveaxis(sample, axis, -1)).astype(np.int64)
        weights = np.zeros((sample.shape[0], len(note_ids)))
        np.add.at(weights, (np.arange(sample.shape[0])[:, None], sample), 1.0)
        return mean_scores(weights, system_notes) - mean_scores(weights, reference_notes)

    everything = np.arange(len(note_ids))
    observed = difference(everything)[:, 0]
    result = bootstrap((everything,), difference, vectorized=True, n_resamples=BOOTSTRAP_RESAMPLES,
                       method="percentile", random_state=seed)  # fmt: skip
    low, high = result.confidence_interval
    return {
        m: {"diff": float(observed[j]), "low": float(low[j]), "high": float(high[j])} for j, m in enumerate(HEADLINE)
    }

"""Weak supervision: the label model weighs labelling functions by how well they agree."""

from __future__ import annotations

import numpy as np
import pytest

from clinsynth.data.records import Provenance, Record
from clinsynth.model.weak_labels import POS, WEAK_SUPERVISION, combine_votes, weakly_labelled

NAMES = ["MEMORY", "MOOD"]


def noisy_votes(truth: np.ndarray, accuracy: float, rng: np.random.Generator) -> np.ndarray:
    flip = rng.random(truth.shape) > accuracy
    return np.where(flip, 1 - truth, truth)


def test_the_label_model_trusts_the_accurate_sources_over_the_noisy_one() -> None:
    rng = np.random.default_rng(0)
    truth = (rng.random((3000, 2)) < 0.3).astype(int)
    votes = np.stack([noisy_votes(truth, a, rng) for a in (0.95, 0.9, 0.6)], axis=1)
    weak = combine_votes(votes, ["rules", "student", "coin"], NAMES, class_balance=np.array([0.3, 0.3]))

    for j, name in enumerate(NAMES):
        rules, student, coin = weak.accuracies[name]
        assert rules > coin and student > coin
        agreement = (weak.positive()[:, j] == truth[:, j]).mean()
        # Better than the noisy source, and than a plain majority of the three.
        assert agreement > (votes[:, 2, j] == truth[:, j]).mean()
        majority = votes[:, :, j].sum(axis=1) >= 2
        assert agreement >= (majority == truth[:, j]).mean() - 0.005


def test_a_category_no_source_votes_for_stays_negative() -> None:
    votes = np.zeros((50, 3, 2), dtype=int)
    votes[:10, :, 0] = POS
    weak = combine_votes(votes, ["a", "b", "c"], NAMES, class_balance=np.array([0.2, 0.0]))
    assert (weak.probabilities[:, 1] == 0).all()
    assert weak.positive()[:10, 0].all() and not weak.positive()[10:, 0].any()


def test_votes_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="3 sources"):
        combine_votes(np.zeros((5, 2, 2), dtype=int), ["a", "b", "c"], NAMES, np.array([0.1, 0.1]))


def test_relabelled_silver_keeps_every_positive_and_as_many_negatives() -> None:
    provenance = Provenance(lm="local/x", program="p", program_sha256="0" * 64, attributes={"attempts": 1})
    records = [Record(id=f"s{i}", text=f"sentence {i}", labels=["MOOD"], source="silver", note_id=f"n{i}",
                      provenance=provenance) for i in range(20)]  # fmt: skip
    votes = np.zeros((20, 3, 2), dtype=int)
    votes[[2, 7, 11], :, 0] = POS  # every source says MEMORY for three sentences, none says MOOD
    weak = combine_votes(votes, ["a", "b", "c"], NAMES, class_balance=np.array([0.2, 0.2]))

    kept = weakly_labelled(records, weak, NAMES, seed=0)

    positives = [r for r in kept if r.labels]
    assert [r.id for r in positives] == ["s2", "s7", "s11"]
    assert all(r.labels == ["MEMORY"] for r in positives)
    assert len(kept) == 6 and all(r.labels == [] for r in kept if r not in positives)
    attributes = positives[0].provenance.attributes
    assert attributes["attempts"] == 1  # the LLM's own provenance is kept
    assert attributes[WEAK_SUPERVISION]["sources"] == ["a", "b", "c"]
    assert attributes[WEAK_SUPERVISION]["probabilities"]["MEMORY"] >= 0.5
    assert records[2].labels == ["MOOD"]  # the input records are not changed

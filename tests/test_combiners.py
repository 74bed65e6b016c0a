"""Ways to combine the rule list with the student: each fits on held-out data only, and the
hybrid of the reports is reproduced from the committed fold runs."""

import json
from collections.abc import Callable

import numpy as np
import pytest
from clinsynth.evals import combiners
from clinsynth.evals.cv import CVSettings

from clinsynth.data.task import load_task
from clinsynth.errors import DataError
from clinsynth.paths import PROJECT_ROOT as REPO

NAMES = ("A", "B")


Part = tuple[np.ndarray, np.ndarray, np.ndarray]  # scores, hits, gold


def from_parts(part: Callable[[int], Part], n: int) -> tuple[combiners.FoldView, np.ndarray]:
    """A fold of ``n`` sentences, an inner dev as large and other folds twice as large, each drawn by
    ``part``; and the fold's gold labels."""
    fold, dev, other = part(n), part(n), part(2 * n)
    return combiners.FoldView(
        scores=fold[0], hits=fold[1], out_of_scope=np.zeros((n, 2), dtype=bool), thresholds=np.array([0.5, 0.5]),
        dev_scores=dev[0], dev_hits=dev[1], dev_gold=dev[2], dev_out_of_scope=np.zeros((n, 2), dtype=bool),
        other_scores=other[0], other_hits=other[1], other_gold=other[2],
    ), fold[2]  # fmt: skip


def view(rng: np.random.Generator, n: int = 200) -> tuple[combiners.FoldView, np.ndarray]:
    """Category A: the rule fires on every positive and on false positives the student scores low.
    Category B: the rule never fires; the student separates at 0.5."""

    def part(m: int) -> Part:
        gold = rng.random((m, 2)) < 0.3
        hits = np.zeros((m, 2))
        hits[:, 0] = gold[:, 0] | (rng.random(m) < 0.3)
        scores = np.where(gold, rng.uniform(0.55, 0.95, (m, 2)), rng.uniform(0.05, 0.45, (m, 2)))
        return scores, hits, gold

    return from_parts(part, n)


def f1(decided: np.ndarray, gold: np.ndarray) -> float:
    tp = (decided & gold).sum()
    return 2 * tp / ((decided != gold).sum() + 2 * tp)


def test_stacks_that_may_overrule_a_rule_drop_its_false_positives_and_the_or_hybrid_cannot():
    v, gold = view(np.random.default_rng(0))
    hybrid = combiners.rules_or_student(v, NAMES)
    assert (hybrid[:, 0] >= (v.hits[:, 0] > 0)).all()  # the hybrid keeps every rule hit
    assert f1(hybrid, gold) < 0.85
    for combine in (combiners.rule_veto, combiners.calibrated_stack):
        assert f1(combine(v, NAMES), gold) == pytest.approx(1.0)
    assert f1(combiners.student_alone(v, NAMES), gold) == pytest.approx(1.0)


def test_the_hybrid_keeps_the_student_to_the_rules_scope_and_the_unscoped_one_does_not():
    v, gold = view(np.random.default_rng(2))
    blocked = np.zeros_like(v.out_of_scope)
    blocked[::2, 1] = True  # B out of scope on every other sentence of the fold
    scoped = combiners.FoldView(**{**v.__dict__, "out_of_scope": blocked})
    kept = combiners.rules_or_student(scoped, NAMES)
    free = combiners.rules_or_student_any_scope(scoped, NAMES)
    assert not kept[::2, 1].any() and free[::2, 1].any()
    assert np.array_equal(kept[1::2], free[1::2])  # same fit (nothing out of scope on the dev)


def test_per_category_thresholds_come_from_the_other_folds_not_the_fold():
    v, gold = view(np.random.default_rng(1))
    decided = combiners.per_category_thresholds(v, NAMES)
    # Category B has no rule: the threshold learnt on the other folds separates the fold too.
    assert f1(decided[:, 1:], gold[:, 1:]) == pytest.approx(1.0)
    flipped = combiners.FoldView(**{**v.__dict__, "other_gold": ~v.other_gold})  # other folds' labels inverted
    assert not np.array_equal(combiners.per_category_thresholds(flipped, NAMES), decided)


def test_the_threshold_from_the_other_folds_is_fitted_there_and_the_rule_use_on_the_inner_dev():
    v, gold = view(np.random.default_rng(3))
    assert f1(combiners.threshold_from_other_folds(v, NAMES), gold) == pytest.approx(
        f1(combiners.rules_or_student(v, NAMES), gold), abs=0.05)
    # Other folds whose students score every sentence 0.97 leave no threshold that adds anything,
    # so the grid's top (0.95) is chosen there and B (no rule) gets no positive on the fold.
    sure = combiners.FoldView(**{**v.__dict__, "other_scores": np.full_like(v.other_scores, 0.97),
                                 "scores": np.minimum(v.scores, 0.9)})  # fmt: skip
    assert not combiners.threshold_from_other_folds(sure, NAMES)[:, 1].any()
    assert combiners.rules_or_student(sure, NAMES)[:, 1].any()  # the inner dev's threshold would add them


def test_the_student_gate_keeps_the_student_off_a_category_only_where_its_additions_hurt_held_out_f1():
    v, gold = view(np.random.default_rng(5))
    hybrid = combiners.rules_or_student(v, NAMES)
    # Held out, the student's additions help on B (the rule never fires there): both gates keep them.
    assert np.array_equal(combiners.student_gated_on_dev(v, NAMES), hybrid)
    assert np.array_equal(combiners.student_gated_on_other_folds(v, NAMES), hybrid)
    assert hybrid[:, 1].any()
    # On the other folds, B's positives made the sentences the student scores low, each found by a
    # rule: there its additions are all wrong, so that gate drops them on B only (left with B's rule
    # hits on the fold: none), and the inner-dev gate, which never sees them, does not.
    other_gold, other_hits = v.other_gold.copy(), v.other_hits.copy()
    other_gold[:, 1] = v.other_scores[:, 1] < 0.2
    other_hits[:, 1] = other_gold[:, 1]
    flipped = combiners.FoldView(**{**v.__dict__, "other_gold": other_gold, "other_hits": other_hits})
    gated = combiners.student_gated_on_other_folds(flipped, NAMES)
    assert not gated[:, 1].any()
    assert np.array_equal(gated[:, 0], hybrid[:, 0])
    assert np.array_equal(combiners.student_gated_on_dev(flipped, NAMES), hybrid)


def veto_view(rng: np.random.Generator, n: int = 300) -> tuple[combiners.FoldView, np.ndarray]:
    """Category A: the rule fires on every positive, which the student scores 0.1-0.95, and on false
    positives it scores under 0.04, so the rule is worth using and a bar of 0.05 drops only its errors.
    Category B: no rule; the student separates at 0.5."""

    def part(m: int) -> Part:
        gold = rng.random((m, 2)) < 0.3
        scores = np.where(gold, rng.uniform(0.55, 0.95, (m, 2)), rng.uniform(0.05, 0.45, (m, 2)))
        unsure = gold[:, 0] & (rng.random(m) < 0.5)
        scores[unsure, 0] = rng.uniform(0.1, 0.3, unsure.sum())
        false_hit = ~gold[:, 0] & (rng.random(m) < 0.2)
        scores[false_hit, 0] = rng.uniform(0.0, 0.04, false_hit.sum())
        hits = np.zeros((m, 2))
        hits[:, 0] = gold[:, 0] | false_hit
        return scores, hits, gold

    return from_parts(part, n)


def test_the_per_category_rule_veto_drops_low_scored_hits_only_where_the_other_folds_found_them_wrong():
    v, gold = veto_view(np.random.default_rng(6))
    hybrid = combiners.rules_or_student(v, NAMES)
    vetoed = combiners.rule_veto_per_category(v, NAMES)
    assert (hybrid[:, 0] & ~gold[:, 0]).any()  # the hybrid keeps the rule's false positives on A
    assert f1(vetoed[:, :1], gold[:, :1]) == pytest.approx(1.0)  # the veto drops them and nothing right
    assert np.array_equal(vetoed[:, 1], hybrid[:, 1])  # B: no rule hit to veto
    # Where the other folds' low-scored rule hits were right, no bar is worth it: every hit stands.
    right = combiners.FoldView(**{**v.__dict__, "other_gold": v.other_gold | (v.other_hits > 0)})
    assert np.array_equal(combiners.rule_veto_per_category(right, NAMES), hybrid)


def test_the_seed_ensemble_averages_the_seeds_scores_of_the_same_sentences():
    from clinsynth.evals.cv import FoldRun

    def run(seed: int, ids: list[str]) -> FoldRun:
        return FoldRun(mix="m", seed=seed, fold=0, ids=ids, predictions=[], thresholds={}, n_train=0,
                       train_seconds=0.0, dev_ids=["d"])  # fmt: skip

    v, _ = view(np.random.default_rng(4))
    low = combiners.FoldView(**{**v.__dict__, "scores": v.scores * 0.5})
    ids = [str(i) for i in range(len(v.scores))]
    [(_, merged)] = combiners.seed_mean_views([[(run(0, ids), v)], [(run(1, ids), low)]])
    assert np.allclose(merged.scores, v.scores * 0.75)
    assert np.array_equal(merged.hits, v.hits) and np.array_equal(merged.dev_gold, v.dev_gold)
    with pytest.raises(DataError, match="different sentences"):
        combiners.seed_mean_views([[(run(0, ids), v)], [(run(1, ids[::-1]), low)]])


def test_the_hybrid_of_the_report_is_reproduced_from_the_committed_runs():
    task = load_task(REPO / "tasks" / "sdoh")
    settings = CVSettings.for_task(task)
    summary = combiners.compare(task, settings)
    report = json.loads((task.reports_dir / "augmentation.json").read_text())
    reported = {r["system"]: r for r in report["systems"]}
    for mix in settings.mixes:
        row = next(r for r in summary["systems"] if r["mix"] == mix and r["combiner"] == combiners.HYBRID)
        for metric in ("micro_f1", "macro_f1"):
            assert row[metric][0] == pytest.approx(reported[f"{mix}+rules"][metric][0], abs=1e-9)
        assert row["vs_rules"]["micro_f1"] == pytest.approx(reported[f"{mix}+rules"]["vs_rules"]["micro_f1"])
    assert {r["combiner"] for r in summary["systems"]} == {*combiners.COMBINERS, combiners.SEED_ENSEMBLE}


def test_a_missing_run_is_named_and_nothing_is_trained(tmp_path, monkeypatch):
    from clinsynth.model.classifier import SignsClassifier

    monkeypatch.setattr(SignsClassifier, "train", lambda *a, **k: pytest.fail("trained"))
    task = load_task(REPO / "tasks" / "sdoh")
    with pytest.raises(DataError, match="gold seed 0: folds \\[0, 1, 2\\] have no finished run"):
        combiners.compare(task, CVSettings.for_task(task), work_dir=tmp_path)


def test_the_cue_context_thresholds_are_fitted_apart_on_the_other_folds():
    v, gold = view(np.random.default_rng(7))
    # On the other folds, B's positives in sentences where no rule fires become high-scoring false
    # positives: there the student must be kept off, and where a rule fires it still adds B.
    other_gold = v.other_gold.copy()
    no_cue = ~(v.other_hits > 0).any(axis=1)
    other_gold[no_cue, 1] = False
    flipped = combiners.FoldView(**{**v.__dict__, "other_gold": other_gold})
    decided = combiners.threshold_by_cue_context(flipped, NAMES)
    cue = (v.hits > 0).any(axis=1)
    assert not decided[~cue, 1].any()
    assert decided[cue, 1].any()
    assert np.array_equal(decided[cue, 1], combiners.rules_or_student(v, NAMES)[cue, 1])

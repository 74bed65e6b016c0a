import pytest

from clinsynth.model.metrics import multilabel_scores, set_f1
from tests.conftest import ad_taxonomy

CI, NO, CT, DX = "COGNITIVE_IMPAIRMENT", "NOTICE_BY_OTHERS", "COGNITIVE_TESTING", "DIAGNOSIS"


def test_set_f1_per_sentence():
    assert set_f1([], []) == 1.0
    assert set_f1([CI], []) == 0.0
    assert set_f1([CI, NO], [CI]) == pytest.approx(2 / 3)


def test_scores_by_hand():
    gold = [[CI, NO], [CT], [], [DX], []]
    pred = [[CI], [CT, DX], [CI], [], []]
    s = multilabel_scores(gold, pred, ad_taxonomy())
    # CI: tp1 fp1 fn0; NO: fn1; CT: tp1; DX: fp1 fn1  -> micro tp2 fp2 fn2
    assert s["micro_f1"] == pytest.approx(0.5)
    assert s["per_category"][CI]["f1"] == pytest.approx(2 / 3)
    assert s["per_category"][NO]["f1"] == 0.0 and s["per_category"][NO]["support"] == 1
    assert s["per_category"]["TREATMENT"]["f1"] is None
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0 + 1 + 0) / 4)
    # binary: gold positive 1,2,4 ; predicted positive 1,2,3 -> tp2 fp1 fn1
    assert s["binary_f1"] == pytest.approx(2 / 3)
    # multi-class first labels: gold CI, CT, NONE, DX, NONE ; pred CI, CT, CI, NONE, NONE
    assert s["multiclass_accuracy"] == pytest.approx(3 / 5)
    assert s["exact_match"] == pytest.approx(1 / 5)


def test_mismatched_lengths_fail():
    taxonomy = ad_taxonomy()
    with pytest.raises(ValueError, match="2 gold label sets but 1"):
        multilabel_scores([[], []], [[]], taxonomy)


def test_summed_outcomes_give_the_same_headline_scores_on_any_weighted_subset():
    import numpy as np

    from clinsynth.model.metrics import headline_f1, outcome_matrix

    taxonomy = ad_taxonomy()
    names = list(taxonomy.names)
    rng = np.random.default_rng(0)
    gold = [[n for n in names if rng.random() < 0.15] for _ in range(60)]
    pred = [[n for n in names if rng.random() < 0.15] for _ in range(60)]
    outcomes = outcome_matrix(gold, pred, names)
    for weights in (np.ones(60), rng.integers(0, 3, size=60).astype(float)):
        rows = [i for i, w in enumerate(weights) for _ in range(int(w))]
        expected = multilabel_scores([gold[i] for i in rows], [pred[i] for i in rows], taxonomy)
        micro, macro, binary = headline_f1(weights @ outcomes, len(names))
        assert (micro, macro, binary) == pytest.approx(
            (expected["micro_f1"], expected["macro_f1"], expected["binary_f1"])
        )

"""How many of the rule list's errors a system must fix before a test set can show it better."""

from clinsynth.evals import detectable
from clinsynth.evals.core import paired_ci

from clinsynth.data.taxonomy import Category, Taxonomy

NAMES = ["A", "B"]
TAXONOMY = Taxonomy(name="t", title="t", categories=tuple(Category(name=n, definition=n) for n in NAMES))


def one_sentence_notes(n_notes: int, wrong: int) -> tuple[list[list[str]], list[str], list[list[str]]]:
    """Every note one sentence; the reference misses category A on the first ``wrong`` sentences."""
    gold = [["A"] if i % 2 == 0 else ["B"] for i in range(n_notes)]
    reference = [[] if i < 2 * wrong and i % 2 == 0 else list(g) for i, g in enumerate(gold)]
    return gold, [f"note-{i}" for i in range(n_notes)], reference


def test_wrong_cells_and_fixes_set_them_to_gold():
    gold, _, reference = one_sentence_notes(10, 3)
    cells = detectable.wrong_cells(gold, reference, NAMES)
    assert cells == [(0, "A"), (2, "A"), (4, "A")]
    fixed = detectable.with_fixes(gold, reference, cells[:2], NAMES)
    assert detectable.wrong_cells(gold, fixed, NAMES) == [(4, "A")]
    # A false positive is fixed by removing the label, keeping the category order.
    assert detectable.with_fixes([["B"]], [["A", "B"]], [(0, "A")], NAMES) == [["B"]]


def test_the_fewest_fixes_that_clear_both_cis_are_found_and_do_clear_them():
    gold, notes, reference = one_sentence_notes(200, 40)
    found = detectable.fixes_needed(gold, notes, reference, TAXONOMY)
    assert found["errors"] == 40
    needed = found["needed"]
    assert needed is not None and 1 < needed < 40
    cells = detectable.wrong_cells(gold, reference, NAMES)
    ci = paired_ci(gold, notes, [detectable.with_fixes(gold, reference, cells[:needed], NAMES)], [reference],
                   TAXONOMY)  # fmt: skip
    assert ci["micro_f1"]["low"] > 0 and ci["macro_f1"]["low"] > 0
    too_few = paired_ci(gold, notes, [detectable.with_fixes(gold, reference, cells[:1], NAMES)], [reference],
                        TAXONOMY)  # fmt: skip
    assert too_few["micro_f1"]["low"] <= 0


def test_a_nearly_right_reference_on_a_small_set_cannot_be_beaten_visibly():
    gold, notes, reference = one_sentence_notes(30, 1)
    found = detectable.fixes_needed(gold, notes, reference, TAXONOMY)
    assert found == {"errors": 1, "needed": None}
    words = detectable.needed_words(found, "these 30 sentences")
    assert words.startswith("The rule list is wrong on 1 (sentence, category) cells of these 30 sentences")
    assert "even fixing all of them" in words
    for errors, needed, said in ((0, None, "no system can be shown better"), (4, 4, "be right on every cell"),
                                 (10, 3, "must fix at least 3 of them (30% of them)")):  # fmt: skip
        assert said in detectable.needed_words({"errors": errors, "needed": needed}, "these 30 sentences")

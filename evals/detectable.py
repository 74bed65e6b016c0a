"""How large a win over the rule list a test set can show: the fixes a system would need.

A paired CI on a small test set can only clear 0 when the difference is large against the
noise of resampling its notes. Where the rule list is already nearly right (SDoH gold test:
a handful of wrong (sentence, category) cells), even a system that fixes most of its errors
and makes no new one cannot be shown better. This module measures that limit, so a report
says whether "beats the rule list" is decidable on the set at all:

- ``errors``: the (sentence, category) cells the reference (the rule list) gets wrong;
- ``needed``: the fewest of those cells a system must fix, making no new error, before the
  paired 95% CIs of micro AND macro F1 both clear 0: a lower bound, since a real system also
  adds errors of its own. Which cells are fixed matters (a rare
  category's cell moves macro F1 more), so each count is tried with ``PICKS`` random choices
  of cells, and it counts as enough when most of them clear 0. ``None``: not even fixing every
  error is enough.

Only the reference's predictions and the gold labels are read: no system is chosen with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from clinsynth.evals.core import paired_ci

from clinsynth.data.taxonomy import Taxonomy

PICKS = 5  # random choices of which cells are fixed, per count tried


def wrong_cells(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
                names: Sequence[str]) -> list[tuple[int, str]]:  # fmt: skip
    """(sentence index, category) of every false positive and false negative."""
    return [(i, n) for i, (truth, guess) in enumerate(zip(gold, predicted, strict=True))
            for n in names if (n in truth) != (n in guess)]  # fmt: skip


def with_fixes(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]],
               cells: Sequence[tuple[int, str]], names: Sequence[str]) -> list[list[str]]:  # fmt: skip
    """``predicted`` with the given wrong cells set to the gold answer (category order kept)."""
    fixed = [set(p) for p in predicted]
    for i, n in cells:
        (fixed[i].add if n in gold[i] else fixed[i].discard)(n)
    return [[n for n in names if n in labels] for labels in fixed]


def fixes_needed(gold: Sequence[Sequence[str]], notes: Sequence[str], reference: Sequence[Sequence[str]],
                 taxonomy: Taxonomy, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """``{"errors": n, "needed": k or None}`` for ``reference`` on these sentences (see the module doc)."""
    names = list(taxonomy.names)
    errors = wrong_cells(gold, reference, names)
    rng = np.random.default_rng(seed)

    def clears(k: int) -> bool:
        wins = 0
        for _ in range(PICKS):
            cells = [errors[j] for j in rng.permutation(len(errors))[:k]]
            ci = paired_ci(gold, notes, [with_fixes(gold, reference, cells, names)], [reference], taxonomy)
            wins += all(ci[m]["low"] > 0 for m in ("micro_f1", "macro_f1"))
        return wins > PICKS // 2

    if not errors or not clears(len(errors)):
        return {"errors": len(errors), "needed": None}
    # More fixes never lower the observed gain, so the smallest enough count is found by bisection.
    low, high = 0, len(errors)  # low: not enough (0 fixes is no gain); high: enough
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if clears(middle) else (middle, high)
    return {"errors": len(errors), "needed": high}


def needed_words(detectable: dict[str, Any], where: str) -> str:
    """One sentence for a report; ``where`` names the sentences ("these 95 sentences")."""
    errors, needed = detectable["errors"], detectable["needed"]
    head = f"The rule list is wrong on {errors} (sentence, category) cells of {where}"
    if errors == 0:
        return head + ": no system can be shown better than it here."
    if needed is None:
        return head + ": even fixing all of them, with no new error, would not put both paired CIs above 0."
    if needed == errors:
        return (f"{head}. To have both paired CIs above 0 here, a system must fix every one of them and make no "
                "new error: be right on every cell (`evals.detectable`).")
    share = f"{needed / errors:.0%} of them"
    return (f"{head}. To have both paired CIs above 0 here, a system must fix at least {needed} of them ({share}) "
            "even if it makes no new error, and more for each error it adds (most of 5 random choices of which "
            "cells; `evals.detectable`).")

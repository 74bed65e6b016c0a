"""The LLM check on a hybrid's additions, as a saved model applies it.

A hybrid model labels a category when its rule fires or when the student is confident
(``clinsynth.model.hybrid``). A model whose card asks for the check (``ModelInfo.llm_check``)
keeps each label the student adds beyond the rule list only if the task's labeller LM,
asked about that one sentence and category (``CategoryCheck``), agrees; rule hits are never
asked about. Cross-validation chose it per task (``python -m evals.run llm-check``,
``clinsynth.model.train.default_llm_check``); this module is what ``clinsynth predict``, the
main job and the reports' gold-test lines run, so all apply the same check.

A card may also name a score (``below``): then only the additions the student scored under it
are asked about, and its confident ones stand, as cross-validation fitted it (the check
"below a score"). An addition the LM could not answer after retries stands, as in
cross-validation, and each output row says what was asked and answered. The text goes to the LM only through the
privacy session: the caller names it as private content, and an unapproved remote
endpoint is refused before anything is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.programs.scoring import run_timed
from clinsynth.programs.verify_category import CategoryCheck, NeighbourCheck

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.rules import RuleSet
from clinsynth.data.task import LMSpec
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import DataError
from clinsynth.llm.lm import LMHandle
from clinsynth.llm.session import Content, admit, open_lm
from clinsynth.model.metrics import category_matrix
from clinsynth.model.train import CHECK_ROLE

Cell = tuple[int, str]  # (sentence index, category)
Scores = Sequence[dict[str, float]]  # per sentence, the student's score per category
ANSWERS = {True: "yes", False: "no", None: "unanswered"}


def additions(decided: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """The cells labelled positive where no rule fires (sentences x categories): what the student added.
    Cross-validation (``clinsynth.evals.llm_check``) and a saved model both ask about exactly these."""
    return decided & ~(hits > 0)


def addition_cells(texts: Sequence[str], labels: Sequence[Sequence[str]], rules: RuleSet,
                   names: Sequence[str]) -> list[Cell]:  # fmt: skip
    """``additions`` of these label sets, as (sentence index, category)."""
    hits, _ = rules.scope_matrices(list(texts), list(names))
    decided = category_matrix(labels, names).astype(bool)
    return [(int(i), names[j]) for i, j in zip(*np.nonzero(additions(decided, hits)), strict=True)]


@dataclass
class AdditionCheck:
    """Asks ``handle`` about every addition of a batch of hybrid decisions; drops those it says no to."""

    taxonomy: Taxonomy
    rules: RuleSet
    handle: LMHandle
    threads: int = 1
    show_progress: bool = False
    program: CategoryCheck | NeighbourCheck | None = None  # None: a CategoryCheck built from the taxonomy
    below: float | None = None  # ask only about additions the student scored under this; None: every one

    def __post_init__(self) -> None:
        self.program = self.program or CategoryCheck(self.taxonomy)
        admit(self.handle, "check", self.program)

    @classmethod
    def open(cls, task: Any, data: Sequence[Content], handle: LMHandle | None = None, rules: RuleSet | None = None,
             lm: LMSpec | None = None, program: CategoryCheck | NeighbourCheck | None = None,
             **settings: Any) -> AdditionCheck:  # fmt: skip
        """The check on ``lm`` (default the task's labeller), opened after the privacy check on ``data``
        (``handle``: an LM already open, e.g. in tests).

        ``rules``: the rule list the model was fitted with (a saved hybrid keeps a copy); default the task's.
        ``program``: how the LM is asked (default ``CategoryCheck``)."""
        rules = rules or task.rules
        if rules is None:
            raise DataError(f"task {task.name} has no rule list (rules.yaml): the LLM check needs one to know "
                            "what the student added")  # fmt: skip
        program = program or CategoryCheck(task.taxonomy)
        if handle is None:
            handle = open_lm(lm or task.lm(CHECK_ROLE), CHECK_ROLE, task.privacy, list(data), {"check": program},
                             env_folders=[task.root])  # fmt: skip
        return cls(task.taxonomy, rules, handle, program=program, **settings)

    @classmethod
    def for_model(cls, task: Any, model_dir: Path, what: str, handle: LMHandle | None = None) -> AdditionCheck | None:
        """The check of the saved model in ``model_dir`` on the task's labeller LM, or None when its card asks for
        none; ``what`` names the text the LM will read, private (a user's or gold), for the privacy check."""
        from clinsynth.model.classifier import read_info, saved_rules

        info = read_info(model_dir)
        if not info.llm_check:
            return None
        return cls.open(task, [Content(what, Sensitivity.PRIVATE)], handle, rules=saved_rules(model_dir, info),
                        show_progress=True, below=info.llm_check.get("below"))  # fmt: skip

    def answers(self, texts: Sequence[str], cells: Sequence[Cell],
                notes: Sequence[str | None] | None = None) -> dict[Cell, bool]:  # fmt: skip
        """The LM's yes/no per cell; a cell that failed after retries is left out. ``notes``: each text's
        note, for a ``NeighbourCheck`` (which shows no sentence of the asked one's own note)."""
        if not cells:
            return {}
        # Grouped by category, so consecutive calls share the cached prompt prefix.
        order = sorted(cells, key=lambda cell: (cell[1], cell[0]))

        def ask(cell: Cell) -> Any:
            where = {} if notes is None else {"note": notes[cell[0]]}
            return self.program(sentence=texts[cell[0]], category=cell[1], **where)

        attempts, _ = run_timed(ask, order, self.handle, threads=self.threads, desc="LLM check",
                                show_progress=self.show_progress)  # fmt: skip
        return {cell: bool(a.value.present) for cell, a in zip(order, attempts, strict=True) if a.ok}

    def revise(self, texts: Sequence[str], labels: Sequence[Sequence[str]],
               scores: Scores | None = None) -> tuple[list[list[str]], list[dict]]:  # fmt: skip
        """The labels without the additions the LM said no to, and per sentence what it was asked
        (category -> ``yes``, ``no`` or ``unanswered``). ``scores``: the student's, needed with ``below``."""
        cells = addition_cells(texts, labels, self.rules, self.taxonomy.names)
        if self.below is not None:
            if scores is None:
                raise ValueError("this check asks only about the student's less confident additions: pass scores")
            cells = [(i, name) for i, name in cells if scores[i][name] < self.below]
        said = self.answers(texts, cells)
        kept = [list(row) for row in labels]
        asked: list[dict[str, str]] = [{} for _ in labels]
        for cell in cells:
            i, name = cell
            answer = said.get(cell)
            asked[i][name] = ANSWERS[answer]
            if answer is False:
                kept[i].remove(name)
        return kept, asked

    def predictor(self, classifier: Any) -> Callable[[list[str]], list[list[str]]]:
        """``classifier``'s predict (a saved ``SignsClassifier``: texts -> labels) followed by the check."""

        def checked(texts: list[str]) -> list[list[str]]:
            scores = classifier.scores(texts)
            rows = [dict(zip(classifier.info.labels, map(float, row), strict=True)) for row in scores]
            return self.revise(texts, classifier.decide(scores, texts), rows)[0]

        return checked

    def revise_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Output rows of ``clinsynth.model.predict`` with the check applied (``labels`` revised, ``llm_check`` added
        where something was asked)."""
        scores = [row["scores"] for row in rows] if all("scores" in row for row in rows) else None
        kept, asked = self.revise([row["text"] for row in rows], [row["labels"] for row in rows], scores)
        for row, labels, said in zip(rows, kept, asked, strict=True):
            row["labels"] = labels
            if said:
                row["llm_check"] = said
        return rows

"""Grouped k-fold cross-validation over gold, for telling what LLM data adds from noise.

Gold test has a handful of positives for several categories, so single-split differences
of a few points are noise. Here gold train + dev are pooled and split into ``k`` folds by
*note* (sentences of one note never sit on both sides). For each fold and seed:

- the fold is the evaluation set; of the other notes, ``inner_dev`` of them (by note) pick
  the epoch and the thresholds, the rest is the gold training part;
- LLM data is added to the training part only; silver sentences from notes of the fold or
  of the inner dev are left out (they would leak the evaluation notes);
- ``gold+silver-agree`` keeps the silver sentences whose LLM labels the gold-trained
  student of the same fold and seed agrees with (its out-of-sample decision on them), so a
  weak labeller's noise is filtered by a model that never saw silver;
- ``gold+silver-ws`` relabels silver by weak supervision (``clinsynth.model.weak_labels``):
  the rule list, the LLM's labels and that same gold-trained student vote, a label model
  weighs them, and its positives (plus as many negatives, both counted over all of silver)
  join the training part, less the sentences of held-out notes.

Every mix's out-of-fold predictions cover the whole pool once per seed. Scores are the
mean and spread over seeds; each mix is compared with gold by a paired bootstrap over notes
(``scipy.stats.bootstrap``): the 95% interval of (mix - gold), seeds averaged inside.
Finished runs are stored in the task's ``reports/cv-runs/`` (or ``--work-dir``) keyed by mix,
seed, fold, budget and data, so an interrupted experiment resumes and a committed task folder
reruns its report without training what it already holds.

A system may change the training budget after ``@``: ``gold+bronze@epochs=12`` or
``gold@recipe=contrastive`` (``TrainingBudget`` fields, comma-separated), so recipes are
compared on the same folds, seeds and paired CIs as mixes.
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from clinsynth.evals.core import HEADLINE, headline_over_seeds, paired_ci, per_category_over_seeds, run_key
from clinsynth.evals.detectable import fixes_needed

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.gold import WHOLE_NOTES_FILES
from clinsynth.data.mixes import (
    FOLD_BUILT_PARTS,
    HYBRID_SUFFIX,
    SILVER_AGREE,
    SILVER_WS,
    WHOLE_NOTES_PART,
    MixSources,
    load_part,
    parse_mix,
    split_hybrid,
    whole_notes_part,
)
from clinsynth.data.records import Record
from clinsynth.data.rules import RuleSet
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import DataError
from clinsynth.model.classifier import SignsClassifier, TrainingBudget
from clinsynth.model.metrics import multilabel_scores

AGREE, WEAK, FOLD_BUILT = SILVER_AGREE, SILVER_WS, FOLD_BUILT_PARTS  # built per fold from its gold student
DEFAULT_MIXES = ("gold", "gold+bronze", f"gold+{AGREE}")
DEFAULT_FOLDS = 3  # 936 AD sentences: 3 folds keep ~60 notes and every category in each fold
DEFAULT_SEEDS = (0, 1, 2)
INNER_DEV = 0.2  # share of the training notes that picks epochs and thresholds
RULE_LIST = "rule list"  # the task's rules.yaml, the headline baseline
RUNS_FOLDER = "cv-runs"
GOLD_SHARE_SEED = 1000  # + fold: the shuffle of a fold's gold training notes that a gold share keeps a prefix of


@dataclass
class FoldRun:
    """One (mix, seed, fold): the fold's predictions and scores, and how it was trained."""

    mix: str
    seed: int
    fold: int
    ids: list[str]
    predictions: list[list[str]]
    thresholds: dict[str, float]
    n_train: int
    train_seconds: float
    epochs: list[dict[str, Any]] = field(default_factory=list)
    silver_scores: list[list[float]] | None = None  # gold runs: the student's scores on silver (FOLD_BUILT)
    # The student's scores on the fold and on the inner dev: what the hybrid (``clinsynth.model.hybrid``)
    # stacks with the rule hits, fitted on the inner dev and applied to the fold.
    scores: list[list[float]] | None = None
    dev_ids: list[str] | None = None
    dev_scores: list[list[float]] | None = None
    # The student's scores on the sentences the whole notes of the pool add (``whole_note_extras``)
    # in the fold's notes and in the inner dev's: with the pool's own sentences of those notes,
    # the natural distribution of whole notes, scored out of fold (``evals.whole_view``).
    whole_ids: list[str] | None = None
    whole_scores: list[list[float]] | None = None
    dev_whole_ids: list[str] | None = None
    dev_whole_scores: list[list[float]] | None = None


@dataclass
class CVSettings:
    mixes: tuple[str, ...] = DEFAULT_MIXES
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    folds: int = DEFAULT_FOLDS
    budget: TrainingBudget = field(default_factory=TrainingBudget)
    baselines: bool = True
    pool_limit: int | None = None  # whole notes, in pool order, up to about N sentences (quick runs)
    rules: bool = True  # with a task rule list: the rule-list baseline and each mix stacked with it (MIX+rules)
    gold_share: float = 1.0  # the share of each fold's gold training notes that trains (a gold learning curve)
    # The whole-note view (``evals.experiment``, ``evals.whole_view``): the experiment's report also
    # scores its systems on the pool's whole notes out of fold and chooses the default mix on both
    # sets (``best_mix``).
    whole_view: bool = False

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> CVSettings:
        """The task's ``[experiment]`` settings over the defaults; ``overrides`` that are not None win."""
        values = {**task.experiment_settings, **{k: v for k, v in overrides.items() if v is not None}}
        for mix in values.get("mixes", ()):
            try:
                parse_mix(split_system(mix, TrainingBudget())[0], FOLD_BUILT)
            except DataError as exc:
                raise DataError(str(exc), path=task.config_path, field="experiment.mixes") from None
        return cls(**values)


def share_of_notes(records: Sequence[Record], share: float, fold: int) -> list[Record]:
    """The records of ``share`` of their notes (rounded), drawn by one fixed shuffle per fold, so a
    smaller share's notes are inside a larger one's: the points of a gold learning curve."""
    if not 0.0 < share <= 1.0:
        raise DataError(f"gold share must be in (0, 1], got {share}")
    notes = sorted({note_of(r) for r in records})
    random.Random(GOLD_SHARE_SEED + fold).shuffle(notes)
    kept = set(notes[: max(1, round(len(notes) * share))])
    return [r for r in records if note_of(r) in kept]


def runs_dir(task: Any) -> Path:
    """Where a task keeps its finished fold runs: beside the report computed from them, so a
    committed task folder carries them and a fresh clone's ``clinsynth run`` reuses them."""
    return task.reports_dir / RUNS_FOLDER


def note_of(record: Record) -> str:
    return record.note_id or record.id


def note_folds(pool: Sequence[Record], k: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of each fold's sentences; notes are dealt to folds at random, then balanced by size."""
    from sklearn.model_selection import GroupKFold

    notes = sorted({note_of(r) for r in pool})
    # GroupKFold balances fold sizes deterministically by group order; a seeded renaming
    # of the notes makes the assignment random but reproducible.
    rank = {n: i for i, n in enumerate(np.random.default_rng(seed).permutation(notes))}
    groups = np.asarray([rank[note_of(r)] for r in pool])
    return [test for _, test in GroupKFold(n_splits=k).split(np.zeros(len(pool)), groups=groups)]


def inner_split(records: Sequence[Record], share: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(train, dev) of ``records`` split by note."""
    from sklearn.model_selection import GroupShuffleSplit

    groups = [note_of(r) for r in records]
    split = GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed)
    train_idx, dev_idx = next(split.split(np.zeros(len(records)), groups=groups))
    return [records[i] for i in train_idx], [records[i] for i in dev_idx]


def agreeing_silver(
    silver: Sequence[Record], scores: np.ndarray, thresholds: dict[str, float], names: list[str]
) -> list[Record]:
    """Silver records whose LLM label set equals the student's decision on them."""
    cut = np.asarray([thresholds[n] for n in names], dtype=np.float32)
    kept = []
    for record, row in zip(silver, scores, strict=True):
        student = {n for n, hit in zip(names, row >= cut, strict=True) if hit}
        if student == set(record.labels):
            kept.append(record)
    return kept


def parse_systems(text: str) -> tuple[str, ...]:
    """``"gold,gold@epochs=6,encoder=x,gold+bronze"`` -> ("gold", "gold@epochs=6,encoder=x", "gold+bronze"):
    a comma piece that sets a field (``name=value``) without an ``@`` continues the system before it."""
    systems: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if "=" in piece and "@" not in piece and systems and "@" in systems[-1]:
            systems[-1] += "," + piece
        elif piece:
            systems.append(piece)
    return tuple(systems)


def split_system(spec: str, base: TrainingBudget) -> tuple[str, TrainingBudget]:
    """``"gold+bronze@epochs=12,learning_rate=1e-4"`` -> ("gold+bronze", budget with those fields)."""
    mix, _, variant = spec.partition("@")
    if not variant:
        return mix, base
    fields = {f.name: type(getattr(base, f.name)) for f in dataclasses.fields(TrainingBudget)}
    changes: dict[str, Any] = {}
    for item in variant.split(","):
        name, eq, value = (x.strip() for x in item.partition("="))
        if not eq or name not in fields:
            raise DataError(f"system {spec!r}: {item!r} is not <budget field>=<value>; fields: {', '.join(fields)}")
        try:
            changes[name] = fields[name](value) if fields[name] is not bool else value.lower() in ("1", "true", "yes")
        except ValueError as exc:
            raise DataError(f"system {spec!r}: {name} must be a {fields[name].__name__}, got {value!r}") from exc
    return mix, dataclasses.replace(base, **changes)


class CrossValidation:
    """Runs (or reuses) every mix x seed x fold and scores the pooled out-of-fold predictions."""

    def __init__(self, pool: Sequence[Record], taxonomy: Taxonomy, sources: MixSources, work_dir: Path,
                 settings: CVSettings, rules: RuleSet | None = None) -> None:  # fmt: skip
        self.pool = list(pool)
        self.rules = rules if settings.rules else None
        self.taxonomy = taxonomy
        self.names = list(taxonomy.names)
        self.sources = sources
        self.settings = settings
        self.dir = Path(work_dir)  # made when the first run is kept: a plan (--dry-run) writes nothing
        self.folds = note_folds(self.pool, settings.folds)
        self.parts: dict[str, list[Record]] = {}
        self.silver_hits: np.ndarray | None = None
        self.built: dict[tuple[str, str, int, int], list[Record]] = {}  # fold-built parts (``fold_built``)
        # Runs still to train -> their training sentences (``plan``), and (seconds, sentences) of each
        # run trained so far: the time left is the rest's sentences at the pace so far.
        self.to_train: dict[tuple[str, int, int], int] = {}
        self.trained: list[tuple[float, int]] = []
        self.whole_extras = pool_whole_extras(self.pool, taxonomy, sources.gold_dir)

    def part(self, name: str) -> list[Record]:
        if name not in self.parts:
            if name == WHOLE_NOTES_PART:  # the pool is gold train and dev: the whole notes of both can train
                self.parts[name] = whole_notes_part(self.sources.gold_dir, self.taxonomy, ("train", "dev"))
            else:
                self.parts[name] = load_part(name, self.taxonomy, self.sources)
        return self.parts[name]

    def check_sources(self) -> None:
        """Read every part the mixes name, so a missing or broken file stops the run before any training."""
        for system in self.settings.mixes:
            for part in parse_mix(system.partition("@")[0], FOLD_BUILT):
                self.part("silver" if part in FOLD_BUILT else part)

    # -- one fold ---------------------------------------------------------------------

    def fold_data(self, mix: str, seed: int, fold: int) -> tuple[list[Record], list[Record], list[Record]]:
        """(train, inner dev, evaluation) of one fold; LLM parts join the training side only."""
        mix, _, variant = mix.partition("@")
        held = set(self.folds[fold].tolist())
        evaluation = [self.pool[i] for i in sorted(held)]
        rest = [r for i, r in enumerate(self.pool) if i not in held]
        gold_train, dev = inner_split(rest, INNER_DEV, seed=fold)
        if self.settings.gold_share < 1.0:
            gold_train = share_of_notes(gold_train, self.settings.gold_share, fold)
        blocked = {note_of(r) for r in evaluation} | {note_of(r) for r in dev}
        parts = parse_mix(mix, FOLD_BUILT)
        train = list(gold_train) if "gold" in parts else []
        for part in parts:
            if part == "gold":
                continue
            if part in FOLD_BUILT:
                records = self.fold_built(part, variant, seed, fold, gold_train)
            else:
                records = self.part(part)
            train.extend(r for r in records if r.note_id is None or r.note_id not in blocked)
        return train, dev, evaluation

    def run_path(self, system: str, seed: int, fold: int) -> Path:
        """Where the finished run is kept: its name holds a key of everything the run depends on."""
        mix, budget = split_system(system, self.settings.budget)
        train, dev, evaluation = self.fold_data(system, seed, fold)
        # The key holds the budget itself, so a system spelled differently but trained the
        # same way (e.g. ``gold@epochs=12`` while 12 is the default) reuses the same run.
        key = run_key(mix, seed, fold, budget.key(), [(r.text, r.labels) for r in train],
                      [r.id for r in dev], [r.id for r in evaluation], self.names)  # fmt: skip
        return self.dir / f"{mix}.seed{seed}.fold{fold}.{key}.json"

    def is_done(self, system: str, seed: int, fold: int) -> bool:
        # A silver-agree or silver-ws run's data depend on its gold student's run, which must exist to key it.
        if any(p in system for p in FOLD_BUILT) and not self.is_done(*self._student(system), seed, fold):
            return False
        return self.run_path(system, seed, fold).exists()

    def plan(self) -> tuple[int, int]:
        """(runs to train, runs kept from earlier) of the whole experiment; what is left to train is
        remembered for the time-left estimate of each finished run's line."""
        pending = self.pending()
        self.to_train = {(system, seed, fold): n for system, seed, fold, n in pending}
        return len(pending), self.total_runs - len(pending)

    @property
    def total_runs(self) -> int:
        return len(self.settings.mixes) * len(self.settings.seeds) * self.settings.folds

    def pending(self) -> list[tuple[str, int, int, int]]:
        """(system, seed, fold, training sentences) of every run not kept from earlier; nothing is trained.

        A silver-agree or silver-ws run whose gold student is not trained yet counts all of silver (its upper bound).
        A finished run the experiment's whole-note view will retrain (``retrains_for_whole_notes``) counts too.
        """
        out = []
        for system in self.settings.mixes:
            for seed in self.settings.seeds:
                for fold in range(self.settings.folds):
                    if self.is_done(system, seed, fold) and not self.retrains_for_whole_notes(system, seed, fold):
                        continue
                    fold_built = [p for p in FOLD_BUILT if p in system]
                    if fold_built and not self.run_path(*self._student(system), seed, fold).exists():
                        train, _, _ = self.fold_data(system.replace(fold_built[0], "silver"), seed, fold)
                    else:
                        train, _, _ = self.fold_data(system, seed, fold)
                    out.append((system, seed, fold, len(train)))
        return out

    @staticmethod
    def _student(system: str) -> tuple[str]:
        """The gold system (same budget) whose decisions filter or label silver for a fold-built part."""
        return ("gold" + system[system.index("@"):] if "@" in system else "gold",)

    def fold_built(self, part: str, variant: str, seed: int, fold: int, gold_train: Sequence[Record]) -> list[Record]:
        """A fold-built silver part, made once per (part, budget, seed, fold): ``fold_data`` runs for
        every run's key, plan and training, and a label model fit takes seconds."""
        key = (part, variant, seed, fold)
        if key not in self.built:
            # The student is trained with the same budget as the system it filters for.
            student = self.run("gold" + (f"@{variant}" if variant else ""), seed, fold)
            assert student.silver_scores is not None
            scores = np.asarray(student.silver_scores)
            if part == AGREE:
                self.built[key] = agreeing_silver(self.part("silver"), scores, student.thresholds, self.names)
            else:
                self.built[key] = self.weak_silver(scores, student.thresholds, gold_train, seed)
        return self.built[key]

    def weak_silver(self, student_scores: np.ndarray, thresholds: dict[str, float], gold_train: Sequence[Record],
                    seed: int) -> list[Record]:  # fmt: skip
        """Silver relabelled by the label model over the rule list, the LLM and the fold's gold student."""
        from clinsynth.model.metrics import category_matrix
        from clinsynth.model.weak_labels import combine_votes, weakly_labelled

        silver = self.part("silver")
        cut = np.asarray([thresholds[n] for n in self.names])
        sources = {"LLM": category_matrix([r.labels for r in silver], self.names),
                   "gold student": (student_scores >= cut).astype(int)}  # fmt: skip
        if self.rules is None:  # a label model needs at least three voters
            raise DataError(f"{WEAK} needs the task's rule list (rules.yaml) as its third labelling function")
        if self.silver_hits is None:  # the rule list's votes do not change between folds
            self.silver_hits = self.rules.hit_matrix([r.text for r in silver], self.names).astype(int)
        sources = {RULE_LIST: self.silver_hits, **sources}
        balance = category_matrix([r.labels for r in gold_train], self.names).mean(axis=0)
        weak = combine_votes(np.stack(list(sources.values()), axis=1), list(sources), self.names, balance, seed)
        return weakly_labelled(silver, weak, self.names, seed)

    def run(self, system: str, seed: int, fold: int, *, whole_scores: bool = False) -> FoldRun:
        """The (system, seed, fold) run, a finished one reused as it is; with ``whole_scores`` (the
        whole-note view reads them) a finished run without scores for the whole notes the gold folder
        holds now is retrained for them (runs are deterministic, so its predictions stay as they were)."""
        mix, budget = split_system(system, self.settings.budget)
        kept = self.kept_run(system, seed, fold)
        if kept is not None and not (whole_scores and self.lacks_whole_scores(kept, system, seed, fold)):
            return kept
        train, dev, evaluation = self.fold_data(system, seed, fold)
        name = f"{system} seed {seed} fold {fold}"
        classifier = SignsClassifier.train(
            train, self.taxonomy, dev=dev, budget=budget, seed=seed, mix=mix,
            progress_label=f"{name}: training on {len(train)} sentences", rules=self.rules,
        )  # fmt: skip
        silver_scores = None
        if mix == "gold" and self.sources.silver.exists():
            silver_scores = np.round(classifier.scores([r.text for r in self.part("silver")]), 4).tolist()
        scores = classifier.scores([r.text for r in evaluation])
        result = FoldRun(
            mix=system, seed=seed, fold=fold, ids=[r.id for r in evaluation],
            predictions=classifier.decide(scores), thresholds=classifier.info.thresholds,
            n_train=len(train), train_seconds=classifier.info.train_seconds, epochs=classifier.info.epochs,
            silver_scores=silver_scores, scores=np.round(scores, 5).tolist(), dev_ids=[r.id for r in dev],
            dev_scores=np.round(classifier.scores([r.text for r in dev]), 5).tolist(),
        )  # fmt: skip
        if self.whole_extras:
            held, inner = self.fold_extras(evaluation), self.fold_extras(dev)
            result.whole_ids, result.dev_whole_ids = [r.id for r in held], [r.id for r in inner]
            result.whole_scores = np.round(classifier.scores([r.text for r in held]), 5).tolist()
            result.dev_whole_scores = np.round(classifier.scores([r.text for r in inner]), 5).tolist()
        if kept is not None and kept.predictions != result.predictions:
            print(f"  {name}: retrained for its whole-note scores, and its predictions changed", flush=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_path(system, seed, fold), json.dumps(asdict(result)))
        self.announce(name, result, evaluation)
        return result

    def kept_run(self, system: str, seed: int, fold: int) -> FoldRun | None:
        """The finished (system, seed, fold) run kept from earlier, or None."""
        path = self.run_path(system, seed, fold)
        if not path.exists():
            return None
        return FoldRun(**{**json.loads(path.read_text(encoding="utf-8")), "mix": system})

    def retrains_for_whole_notes(self, system: str, seed: int, fold: int) -> bool:
        """Whether the experiment's whole-note view (``settings.whole_view`` with a rule list) will
        retrain this finished run because it lacks scores for the whole notes the gold folder holds now;
        a plan counts such runs, so its run count and time left hold for the whole experiment."""
        if not (self.settings.whole_view and self.rules is not None and self.whole_extras):
            return False
        kept = self.kept_run(system, seed, fold)
        return kept is not None and self.lacks_whole_scores(kept, system, seed, fold)

    def lacks_whole_scores(self, run: FoldRun, system: str, seed: int, fold: int) -> bool:
        """Whether a finished run misses whole-note scores: it has none, or they are of other
        sentences than the whole notes of its held-out and inner dev notes now (whole notes were
        added to the gold folder after it was trained; its own data and key need not change)."""
        if not self.whole_extras:
            return False
        if run.whole_ids is None or run.dev_whole_ids is None:
            return True
        _, dev, evaluation = self.fold_data(system, seed, fold)
        return (run.whole_ids != [r.id for r in self.fold_extras(evaluation)]
                or run.dev_whole_ids != [r.id for r in self.fold_extras(dev)])  # fmt: skip

    def fold_extras(self, records: Sequence[Record]) -> list[Record]:
        """The whole notes' extra sentences of the notes of ``records``."""
        notes = {note_of(r) for r in records}
        return [r for r in self.whole_extras if note_of(r) in notes]

    def announce(self, name: str, run: FoldRun, evaluation: Sequence[Record]) -> None:
        """A line per finished run: its score on the fold, and the time left for the runs still to train."""
        self.trained.append((run.train_seconds, run.n_train))
        self.to_train.pop((run.mix, run.seed, run.fold), None)
        scores = multilabel_scores([r.labels for r in evaluation], run.predictions, self.taxonomy)
        pace = sum(t for t, _ in self.trained) / max(1, sum(n for _, n in self.trained))
        left = len(self.to_train)
        eta = f"; {left} to train, about {pace * sum(self.to_train.values()) / 60:.0f} min left" if left else ""
        print(f"  {name}: micro F1 {scores['micro_f1']:.3f}, macro F1 {scores['macro_f1']:.3f} on the fold "
              f"({run.train_seconds:.0f} s){eta}", flush=True)  # fmt: skip

    # -- everything ---------------------------------------------------------------------

    def out_of_fold(self, mix: str, seed: int) -> tuple[list[list[str]], list[FoldRun]]:
        """Predictions for every pool sentence (pool order) from the folds that held it out."""
        by_id: dict[str, list[str]] = {}
        runs = []
        for fold in range(self.settings.folds):
            run = self.run(mix, seed, fold)
            runs.append(run)
            by_id.update(zip(run.ids, run.predictions, strict=True))
        return [by_id[r.id] for r in self.pool], runs

    def hybrid_out_of_fold(self, runs: Sequence[FoldRun]) -> list[list[str]]:
        """Each fold's student stacked with the rule hits (fitted on its inner dev), pool order."""
        from clinsynth.model.hybrid import RuleStack

        assert self.rules is not None
        by_id = {r.id: r for r in self.pool}
        predicted: dict[str, list[str]] = {}
        for run in runs:
            if run.scores is None or run.dev_scores is None or run.dev_ids is None:
                raise DataError(f"cached run {run.mix} seed {run.seed} fold {run.fold} has no scores; "
                                f"remove {self.dir} to rerun it")  # fmt: skip
            dev = [by_id[i] for i in run.dev_ids]
            stack = RuleStack.fit_held_out(self.names, np.asarray(run.dev_scores), dev, self.rules)
            texts = [by_id[i].text for i in run.ids]
            labels = stack.predict(self.names, np.asarray(run.scores), texts, self.rules)
            predicted.update(zip(run.ids, labels, strict=True))
        return [predicted[r.id] for r in self.pool]

    def systems_out_of_fold(self, mix: str, seed: int) -> tuple[dict[str, list[list[str]]], list[FoldRun]]:
        """The mix's out-of-fold predictions and, with a rule list, its hybrid's (``MIX+rules``, the
        same students): what every suite scores per (mix, seed)."""
        predicted, runs = self.out_of_fold(mix, seed)
        systems = {mix: predicted}
        if self.rules is not None:
            systems[mix + HYBRID_SUFFIX] = self.hybrid_out_of_fold(runs)
        return systems, runs

    def baselines(self) -> dict[str, list[list[str]]]:
        """Keyword lexicon and TF-IDF + LR, fold by fold on the gold parts (deterministic: one 'seed')."""
        from clinsynth.model.baselines import KeywordLexicon, TfidfLogReg

        lexicon = KeywordLexicon.from_taxonomy(self.taxonomy)
        out: dict[str, list[list[str]]] = {}
        if self.rules is not None:
            out[RULE_LIST] = self.rules.predict([r.text for r in self.pool])
        out["keyword lexicon"] = lexicon.predict([r.text for r in self.pool])
        by_id: dict[str, list[str]] = {}
        for fold in range(self.settings.folds):
            train, dev, evaluation = self.fold_data("gold", 0, fold)
            model = TfidfLogReg(self.taxonomy.names).fit(train, dev)
            by_id.update(zip([r.id for r in evaluation], model.predict([r.text for r in evaluation]), strict=True))
        out["tf-idf + LR (gold)"] = [by_id[r.id] for r in self.pool]
        return out


def run(pool: Sequence[Record], taxonomy: Taxonomy, sources: MixSources, work_dir: Path,
        settings: CVSettings, rules: RuleSet | None = None) -> dict[str, Any]:  # fmt: skip
    """Every mix x seed x fold (reusing finished runs), hybrids with the rule list, baselines,
    scores and paired CIs vs gold and vs the rule list."""
    return run_experiment(CrossValidation(pool, taxonomy, sources, work_dir, settings, rules))


def run_experiment(cv: CrossValidation) -> dict[str, Any]:
    """``run`` on an experiment already built (``task_cross_validation`` builds a task's)."""
    pool, taxonomy, settings = cv.pool, cv.taxonomy, cv.settings
    cv.check_sources()
    to_train, kept = cv.plan()
    retrain = sum(cv.run_path(system, seed, fold).exists() for system, seed, fold in cv.to_train)
    again = f" ({retrain} of them finished runs retrained for the whole notes' scores)" if retrain else ""
    print(f"cross-validation: {to_train} runs to train{again}, {kept} kept from earlier runs ({cv.dir})", flush=True)
    gold_sets = [list(r.labels) for r in pool]
    notes = [note_of(r) for r in pool]
    predictions: dict[str, list[list[list[str]]]] = {}
    systems = []
    started = time.monotonic()
    total = len(settings.mixes) * len(settings.seeds)
    for k, (mix, seed) in enumerate(((m, s) for m in settings.mixes for s in settings.seeds), 1):
        print(f"[{k}/{total}] {mix} seed {seed} ({settings.folds} folds)", flush=True)
        found, runs = cv.systems_out_of_fold(mix, seed)
        for system, predicted in found.items():
            predictions.setdefault(system, []).append(predicted)
        if len(predictions[mix]) == len(settings.seeds):
            systems.append(_summary(mix, "mix", predictions[mix], gold_sets, taxonomy, runs))
            if cv.rules is not None:
                hybrid = mix + HYBRID_SUFFIX
                systems.append(_summary(hybrid, "hybrid", predictions[hybrid], gold_sets, taxonomy, runs))
    if settings.baselines:
        for name, predicted in cv.baselines().items():
            predictions[name] = [predicted]
            systems.append(_summary(name, "baseline", [predicted], gold_sets, taxonomy, []))
    for row in systems:
        reference = reference_of(row["system"], predictions)
        if reference:
            row["reference"] = reference
            row["vs_gold"] = paired_ci(gold_sets, notes, predictions[row["system"]], predictions[reference], taxonomy)
        if row["kind"] == "hybrid":  # what stacking with the rules adds to the same students
            student, _ = split_hybrid(row["system"])
            row["vs_student"] = paired_ci(gold_sets, notes, predictions[row["system"]], predictions[student], taxonomy)
        if RULE_LIST in predictions and row["system"] != RULE_LIST:
            row["vs_rules"] = paired_ci(gold_sets, notes, predictions[row["system"]], predictions[RULE_LIST], taxonomy)
    # How many of the rule list's errors a system must fix before these folds can show it better.
    rule_list = predictions.get(RULE_LIST)
    detectable = fixes_needed(gold_sets, notes, rule_list[0], taxonomy) if rule_list else None
    return {
        "n": len(pool),
        "notes": len(set(notes)),
        "detectable": detectable,
        "folds": settings.folds,
        "seeds": list(settings.seeds),
        "budget": asdict(settings.budget),
        "support": {n: sum(n in r.labels for r in pool) for n in taxonomy.names},
        "bronze_per_target": bronze_per_target(cv) if any("bronze" in m for m in settings.mixes) else None,
        "systems": systems,
        "seconds": round(time.monotonic() - started, 1),
    }


def pool_whole_extras(pool: Sequence[Record], taxonomy: Taxonomy, gold_dir: Path) -> list[Record]:
    """The sentences the whole gold train and dev notes add to the pool, in the pool's notes
    (``clinsynth.data.gold.whole_note_extras``); ``[]`` where the gold folder keeps none."""
    from clinsynth.data.gold import load_gold, whole_note_extras

    if not any((Path(gold_dir) / WHOLE_NOTES_FILES[s]).exists() for s in ("train", "dev")):
        return []
    in_pool, notes = {r.id for r in pool}, {note_of(r) for r in pool}
    extras = whole_note_extras(gold_dir, taxonomy, load_gold(gold_dir, taxonomy, splits=("train", "dev")))
    return [r for r in extras if note_of(r) in notes and r.id not in in_pool]


def whole_notes(records: Sequence[Record], limit: int | None) -> list[Record]:
    """The first notes' sentences, in order, until about ``limit`` sentences (all of them without a limit)."""
    if limit is None:
        return list(records)
    kept_notes: set[str] = set()
    out: list[Record] = []
    for record in records:
        note = note_of(record)
        if note not in kept_notes and len(out) >= limit:
            continue
        kept_notes.add(note)
        out.append(record)
    return out


def bronze_per_target(cv: CrossValidation) -> int:
    """The most bronze sentences any target category has: the x of the learning curve's 'all' point."""
    from collections import Counter

    from clinsynth.data.mixes import bronze_target

    counts = Counter(bronze_target(r) for r in cv.part("bronze"))
    return max(counts.values(), default=0)


def task_test_line(task: Any, gold: dict[str, list[Record]], model_dir: Path, handle: Any = None) -> dict[str, Any]:
    """``gold_test`` of a task's model: its rule list, its whole test notes, and the sentences of its
    whole train and dev notes among those a test sentence must not repeat. ``handle``: the LM of the
    model's LLM check when the caller opened it (to count its usage); else it is opened here if needed."""
    from clinsynth.data.gold import trainable_whole_sentences

    seen = trainable_whole_sentences(task.gold_dir, task.taxonomy, gold)
    return gold_test(gold, task.taxonomy, model_dir, task.rules, task.whole_notes(gold["test"]), seen,
                     checked=lambda model: checked_predict(task, model_dir, model, TEST_TEXT, handle))


TEST_TEXT = "gold test + whole test notes"  # what an LLM check on the test lines reads (the privacy check names it)


def checked_predict(task: Any, model_dir: Path, model: Any, what: str,
                    handle: Any = None) -> Callable[[list[str]], list[list[str]]]:  # fmt: skip
    """The predict of ``model`` (the saved model in ``model_dir``) followed by its LLM check when its card
    asks for one (``clinsynth.programs.addition_check``); ``what``: the private text the LM will read."""
    from clinsynth.programs.addition_check import AdditionCheck

    check = AdditionCheck.for_model(task, model_dir, what, handle)
    return check.predictor(model) if check else model.predict


def gold_test(gold: dict[str, list[Record]], taxonomy: Taxonomy, model_dir: Path, rules: RuleSet | None = None,
              whole_notes: Sequence[Record] = (), whole_seen: Sequence[Record] = (),
              checked: Callable[[Any], Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """The report's final line on gold test: the default model beside the gold-only model (when
    trained, ``reference_model_dir``), the rule list, the keyword lexicon and TF-IDF + LR fitted
    on gold train; the default model's paired CIs (notes resampled) against the rule list and gold.

    ``whole_notes`` (every sentence of some whole test notes, ``clinsynth.data.gold.load_whole_notes``)
    are scored the same way under ``"whole_notes"``: what to expect on whole notes, where most
    sentences are NONE, beside the test set enriched for categories. With a rule list, each set
    also says how many of its errors a system must fix to be shown better (``evals.detectable``).
    A test sentence whose text is in gold train or dev, or in ``whole_seen`` (the whole train and dev
    notes, which a model may train on), is left out. ``checked(model)``: the default model's
    predict with its LLM check, for a model whose card asks for one (``checked_predict``)."""
    from clinsynth.data.gold import unseen
    from clinsynth.model.baselines import KeywordLexicon, TfidfLogReg
    from clinsynth.model.classifier import SignsClassifier
    from clinsynth.model.train import reference_model_dir

    systems: dict[str, Callable[[list[str]], list[list[str]]]] = {}
    note = f"No default model in {model_dir} yet (`clinsynth train`)."
    default = None
    if (Path(model_dir) / "clinsynth.json").exists():
        model = SignsClassifier.load(model_dir, taxonomy)
        info = model.info
        if info.llm_check and checked is None:
            raise ValueError(f"{model_dir}: the model checks its additions with an LLM; pass checked=")
        default = f"default model ({info.mix}{', LLM-checked' if info.llm_check else ''})"
        systems[default] = checked(model) if info.llm_check else model.predict
        whole_dev = any(Path(f).name == WHOLE_NOTES_FILES["dev"] for f in info.data_files)
        where = "gold dev" + (" (the rule stack's on gold dev and the whole dev notes)" if whole_dev else "")
        note = (f"The default model ({Path(model_dir).name}/, trained {info.created_at} on `{info.mix}` with "
                f"thresholds on {where}) and the baselines")  # fmt: skip
        reference = reference_model_dir(model_dir)
        if info.mix != "gold" and (reference / "clinsynth.json").exists():
            systems["gold-only model"] = SignsClassifier.load(reference, taxonomy).predict
    if rules is not None:
        systems[RULE_LIST] = rules.predict
    systems["keyword lexicon"] = KeywordLexicon.from_taxonomy(taxonomy).predict
    systems["tf-idf + LR (gold)"] = TfidfLogReg(taxonomy.names).fit(gold["train"], gold["dev"]).predict

    def scored(records: Sequence[Record], what: str) -> dict[str, Any]:
        kept = unseen(records, gold, whole_seen)
        texts, truth, notes = [r.text for r in kept], [list(r.labels) for r in kept], [note_of(r) for r in kept]
        predicted = {name: predict(texts) for name, predict in systems.items()}
        rows = []
        for name, labels in predicted.items():
            scores = multilabel_scores(truth, labels, taxonomy)
            row: dict[str, Any] = {"system": name, **{m: scores[m] for m in HEADLINE}}
            if name == default:
                for other, key in ((RULE_LIST, "vs_rules"), ("gold-only model", "vs_gold")):
                    if other in predicted:
                        row[key] = paired_ci(truth, notes, [labels], [predicted[other]], taxonomy)
            rows.append(row)
        none = sum(1 for t in truth if not t)
        words = (f"{note}, on {len(kept)} {what} ({len(set(notes))} notes, {none} of them NONE; "
                 f"{len(records) - len(kept)} sentences whose text is also in train or dev are left out).")  # fmt: skip
        out: dict[str, Any] = {"note": words if default else note, "systems": rows, "sentences": len(kept),
                               "default": default}  # the default model's system name; None: no model yet
        if RULE_LIST in predicted:
            out["detectable"] = fixes_needed(truth, notes, predicted[RULE_LIST], taxonomy)
        return out

    out = scored(gold["test"], "gold test sentences")
    if whole_notes:
        out["whole_notes"] = scored(whole_notes, "sentences of whole test notes, every sentence of each")
    return out


def reference_of(system: str, available: Sequence[str] | dict[str, Any]) -> str | None:
    """What a system is compared with: gold trained the same way when that ran, else the same
    mix with the default budget, else plain gold.

    ``gold+bronze@epochs=12`` is compared with ``gold@epochs=12`` (what the data adds under
    that recipe) or, without it, with ``gold+bronze`` (what the recipe adds to that mix);
    ``gold@epochs=12`` with ``gold``. A recipe's hybrid, ``gold+bronze@epochs=12+rules``, is
    compared with the hybrids of the same kind: ``gold@epochs=12+rules``, else ``gold+bronze+rules``
    (what the recipe adds once stacked with the rules).
    """
    student, hybrid = split_hybrid(system)
    mix, _, variant = student.partition("@")
    same_budget = f"gold@{variant}" if variant else "gold"
    candidates = (same_budget, mix, "gold")
    if hybrid and variant:
        candidates = (same_budget + HYBRID_SUFFIX, mix + HYBRID_SUFFIX, "gold")
    for candidate in candidates:
        if candidate in available and candidate != system:
            return candidate
    return None


def _summary(name: str, kind: str, per_seed: list[list[list[str]]], gold: list[list[str]], taxonomy: Taxonomy,
             runs: list[FoldRun]) -> dict[str, Any]:  # fmt: skip
    scores = [multilabel_scores(gold, p, taxonomy) for p in per_seed]
    row: dict[str, Any] = {"system": name, "kind": kind, "runs": len(per_seed)}
    row.update(headline_over_seeds(scores))
    row["per_category"] = per_category_over_seeds(scores, taxonomy.names)
    if runs:
        row["n_train"] = round(statistics.fmean(r.n_train for r in runs))
        row["train_seconds"] = round(statistics.fmean(r.train_seconds for r in runs), 1)
    return row


def task_cross_validation(task: Any, settings: CVSettings, *, sources: MixSources | None = None,
                          work_dir: Path | None = None) -> CrossValidation:  # fmt: skip
    """The task's experiment over its pool (gold train + dev, ``settings.pool_limit``), its runs kept in
    ``work_dir`` (default: the task's ``reports/cv-runs/``); nothing is read or trained yet."""
    gold = task.gold()
    pool = whole_notes(gold["train"] + gold["dev"], settings.pool_limit)
    return CrossValidation(pool, task.taxonomy, sources or MixSources.for_task(task), work_dir or runs_dir(task),
                           settings, task.rules)  # fmt: skip


def plan_task(task: Any, settings: CVSettings, *, sources: MixSources | None = None,
              work_dir: Path | None = None) -> tuple[list[tuple[str, int, int, int]], int]:  # fmt: skip
    """The runs ``cross_validate_task`` would train (system, seed, fold, training sentences) and how
    many it would keep from earlier; nothing is trained (``--dry-run``)."""
    cv = task_cross_validation(task, settings, sources=sources, work_dir=work_dir)
    cv.check_sources()
    pending = cv.pending()
    return pending, cv.total_runs - len(pending)


def refresh_test_line(task: Any, out_dir: Path, model_dir: Path | None = None,
                      handle: Any = None) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Rewrite the report under ``out_dir`` with the gold-test line of the model now in
    ``model_dir`` (the main job trains the default model after cross-validation chose its mix).
    Returns the report's path and its new test line (``gold_test``'s)."""
    from clinsynth.evals.cv_report import REPORT, write_report

    summary = json.loads((Path(out_dir) / f"{REPORT}.json").read_text(encoding="utf-8"))
    gold = task.gold()
    summary["test"] = task_test_line(task, gold, model_dir or task.model_dir, handle)
    return write_report(summary, task.taxonomy, out_dir, summary["command"]), summary["test"]

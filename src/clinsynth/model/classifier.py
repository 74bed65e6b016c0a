"""The task's sentence classifier: SetFit on the bundled all-MiniLM-L6-v2 (or ``--encoder``), multi-label.

Two recipes (``TrainingBudget.recipe``):

- ``end-to-end`` (default): the encoder and a differentiable sigmoid head (SetFit's
  ``SetFitHead``) are trained together with a BCE loss weighted per category
  (``clinsynth.model.finetune``); the epoch that scores best on gold dev is kept.
- ``contrastive``: SetFit's two phases, contrastive fine-tuning on sentence pairs (rare
  categories oversampled), then one logistic-regression head per category with
  ``class_weight="balanced"``.

Either way each category's decision threshold is tuned for F1 on gold dev instead of 0.5.
The binary (any sign vs NONE) and multi-class (first category in guideline order) views
derive from the label set. A trained classifier saves as a SetFit model directory plus
``clinsynth.json`` (labels, thresholds, mix, counts, scores, epochs) and a ``README.md`` card.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinsynth.data.records import Record, label_counts, now_iso
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import ClinsynthError
from clinsynth.model.metrics import category_matrix, label_matrix, micro_macro_f1

log = logging.getLogger(__name__)

META_FILE = "clinsynth.json"
RULES_FILE = "rules.yaml"  # the copy of the rule list a model reads (a hybrid, a rule_hints student)
THRESHOLD_GRID = tuple(round(t, 2) for t in np.arange(0.1, 0.91, 0.05))
# With a handful of dev positives the best threshold is noise (2 positives chose 0.1 and
# flooded test with false positives); such categories keep 0.5.
MIN_DEV_POSITIVES = 5


RECIPES = ("end-to-end", "contrastive")


@dataclass(frozen=True)
class TrainingBudget:
    """How one classifier is trained (SetFit's one-args-object style); sized for minutes on 2 CPU cores.

    ``end-to-end`` (default): the encoder and a differentiable multi-label head are trained
    together with a class-weighted BCE loss, keeping the epoch that scores best on dev
    (``clinsynth.model.finetune``). ``contrastive``: SetFit's two phases, contrastive pairs then
    one logistic-regression head per category (the earlier recipe, kept for comparison).
    """

    recipe: str = "end-to-end"
    # A sentence-transformers folder to start from; "" = the bundled all-MiniLM-L6-v2. A larger
    # encoder is an option, not the default: see tasks/ad_signs/reports/encoder.md for what it gains and costs.
    encoder: str = ""
    batch_size: int = 16
    max_length: int = 64  # tokens; clinical sentences are short, long ones lose only their tail
    # end-to-end
    # At most: the best epoch on dev is kept, and training stops `patience` epochs after it.
    # 12, not 6: in CV the dev curves were still rising at 6 (gold+bronze@epochs=12 vs 6:
    # micro +0.049 [+0.034, +0.063], macro +0.046 [+0.030, +0.061]; `python -m evals.run cv --mixes
    # gold,gold+bronze,gold+bronze@epochs=12 --seeds 0,1,2 --folds 3` while the cap was 6).
    epochs: int = 12
    learning_rate: float = 5e-5  # encoder
    head_learning_rate: float = 1e-3
    warmup: float = 0.1  # share of all steps spent warming up the learning rate
    weight_cap: float = 10.0  # cap of a category's positive-class weight (negatives / positives)
    patience: int = 2
    # Train a hybrid's student on what the rule list misses: a category's loss leaves out the
    # sentences its rule fires on (the hybrid labels those by the rule). Every epoch is trained:
    # the hybrid's dev score sits at the rule list's from the first epoch (a fold's inner dev has
    # a handful of rule misses), so early stopping on it ended SDoH runs after 3 epochs, untrained.
    # Needs the task's rule list. Not the default: its hybrid was worse than the plain student's on
    # AD (seed 0: micro -0.044, macro -0.035) and equal to the rule list on SDoH, 3 x 3
    # (tasks/*/reports/rule-misses/): trained without the easy positives, the student is too unsure
    # to add any beyond the rules at a precision the hybrid accepts.
    rule_misses: bool = False
    # Show the student the rule list's verdict: each sentence is read with the categories the list
    # labels it with written before it (``hinted_texts``), in training and in scoring, so the student
    # learns from gold where a rule hit is right and where its wording misleads it, and can add what
    # the rules miss. The field's way of feeding a rule system's output to a learner as features.
    # Needs the task's rule list. Not the default: its hybrid was level with the plain hybrid on SDoH
    # (3 x 3: micro +0.006 [-0.002, +0.014], macro +0.004 [-0.009, +0.019]) and worse on AD (seed 0:
    # -0.022 [-0.048, +0.001] / -0.020 [-0.052, +0.007]) (tasks/*/reports/rule-hints/): told where
    # the rules fire, the student leans on them and adds fewer of the misses the hybrid gains from.
    rule_hints: bool = False
    # contrastive
    max_steps: int = 40  # contrastive steps; pairs seen = max_steps * batch_size
    body_learning_rate: float = 2e-5
    min_per_category: int = 16
    head_max_iter: int = 2000

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ClinsynthError(f"unknown training recipe {self.recipe!r}; recipes: {', '.join(RECIPES)}")
        if self.encoder and not (Path(self.encoder) / "modules.json").is_file():
            raise ClinsynthError(f"encoder {self.encoder}: not a sentence-transformers folder (no modules.json)")

    def changes(self) -> dict[str, Any]:
        """The fields set away from their defaults (what a command line or a report names)."""
        default = asdict(TrainingBudget())
        return {k: v for k, v in asdict(self).items() if v != default[k]}

    def key(self) -> dict[str, Any]:
        """The fields that decide a training run, for cache keys: a field added later counts only when
        set, so runs cached before it existed stay valid."""
        return {k: v for k, v in asdict(self).items() if not (k in _LATER_FIELDS and v == _LATER_FIELDS[k])}

    def estimated_seconds(self, sentences: int) -> float | None:
        """About how long training on ``sentences`` takes on 2 CPU cores with the bundled encoder, every
        epoch run (early stopping often ends sooner); None where not measured (contrastive, another encoder)."""
        if self.recipe != "end-to-end" or self.encoder:
            return None
        return sentences * self.epochs * CPU_SECONDS_PER_SENTENCE_EPOCH


_LATER_FIELDS: dict[str, Any] = {"encoder": "", "rule_misses": False, "rule_hints": False}
# End-to-end training of all-MiniLM-L6-v2, batch 16, on 2 CPU cores, per-epoch dev scoring included:
# 0.016-0.022 s in the AD and SDoH fold runs (tasks/*/reports/cv-runs/), 0.027 s for the AD
# default model (`clinsynth train --mix gold+bronze+rules`: 378 s, 1,178 sentences, 12 epochs).
CPU_SECONDS_PER_SENTENCE_EPOCH = 0.025


@dataclass
class ModelInfo:
    """What a saved classifier says about itself (``clinsynth.json``)."""

    labels: list[str]
    thresholds: dict[str, float]
    mix: str = "custom"
    seed: int = 0
    budget: dict[str, Any] = field(default_factory=dict)
    train_counts: dict[str, int] = field(default_factory=dict)
    train_sources: dict[str, int] = field(default_factory=dict)
    train_seconds: float = 0.0
    dev_scores: dict[str, Any] = field(default_factory=dict)
    test_scores: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=now_iso)
    task: str = ""  # the task's name and title (model card)
    title: str = ""
    data_files: dict[str, str] = field(default_factory=dict)  # training/threshold files -> sha256
    epochs: list[dict[str, Any]] = field(default_factory=list)  # end-to-end: loss and dev score per epoch
    # A hybrid model: the per-category stack of student scores and rule hits (clinsynth.model.hybrid
    # RuleStack state). Empty: the student alone.
    hybrid: dict[str, Any] = field(default_factory=dict)
    rules_sha256: str = ""  # the rule list copied beside a model that reads one (``needs_rules``)
    # The hybrid's additions beyond the rule list are checked by the task's labeller LM where
    # cross-validation chose it (clinsynth.programs.addition_check; which report chose it, on which LM).
    # This layer only carries it: ``predict``/``scores`` here are the model without the check. Empty: no check.
    llm_check: dict[str, Any] = field(default_factory=dict)


def oversample_minority(
    texts: Sequence[str], matrix: np.ndarray, min_count: int, rng: np.random.Generator
) -> tuple[list[str], np.ndarray]:
    """Repeat sentences of categories with fewer than ``min_count`` examples (not absent ones)."""
    rows = list(range(len(texts)))
    for column in range(matrix.shape[1]):
        members = np.flatnonzero(matrix[:, column])
        if 0 < len(members) < min_count:
            rows.extend(rng.choice(members, size=min_count - len(members), replace=True).tolist())
    rows_array = np.asarray(rows)
    return [texts[i] for i in rows_array], matrix[rows_array]


def tune_thresholds(scores: np.ndarray, gold: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Per category, the grid threshold with the best F1 on (dev) data.

    Categories with fewer than ``MIN_DEV_POSITIVES`` positives keep 0.5.
    Ties go to the threshold closest to 0.5, so a flat F1 curve does not pick an extreme.
    """
    thresholds = {}
    for j, name in enumerate(names):
        positives = gold[:, j].astype(bool)
        if positives.sum() < MIN_DEV_POSITIVES:
            thresholds[name] = 0.5
            continue
        best = (-1.0, 0.0, 0.5)
        for t in THRESHOLD_GRID:
            predicted = scores[:, j] >= t
            tp = int((predicted & positives).sum())
            f1 = 2 * tp / (predicted.sum() + positives.sum())
            key = (round(f1, 9), -abs(t - 0.5), t)
            best = max(best, key)
        thresholds[name] = float(best[2])
    return thresholds


class SignsClassifier:
    """Multi-label classifier over a taxonomy's categories; ``predict`` gives label sets."""

    def __init__(self, model: Any, info: ModelInfo, rules: Any = None) -> None:
        self.model = model
        self.info = info
        self.rules = rules  # clinsynth.data.rules.RuleSet of a model that reads one (``needs_rules``)

    def stack_with_rules(self, rules: Any, dev: Sequence[Record]) -> None:
        """Make this a hybrid: stack the student's dev scores with the rule list's hits
        (``clinsynth.model.hybrid``); ``dev`` must be sentences the student did not train on."""
        from clinsynth.model.hybrid import RuleStack

        if not dev:
            raise ClinsynthError("stacking with rules needs held-out (dev) sentences")
        stack = RuleStack.fit_held_out(self.labels, self.scores([r.text for r in dev]), dev, rules)
        self.info.hybrid = stack.state()
        self.read_rules(rules)

    def read_rules(self, rules: Any) -> None:
        """Keep ``rules`` as the list this model reads, its sha256 on the card (provenance)."""
        from clinsynth.fingerprint import file_sha256

        self.rules = rules
        self.info.rules_sha256 = file_sha256(rules.path) if rules.path else ""

    @property
    def labels(self) -> list[str]:
        return list(self.info.labels)

    # -- training ---------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        train: Sequence[Record],
        taxonomy: Taxonomy,
        dev: Sequence[Record] | None = None,
        budget: TrainingBudget = TrainingBudget(),
        seed: int = 0,
        mix: str = "custom",
        show_progress: bool = True,
        progress_label: str = "training",
        rules: Any = None,
    ) -> SignsClassifier:
        """Fine-tune the encoder and fit the heads on ``train``; tune thresholds on ``dev``.

        ``progress_label`` names the training's progress bar (one bar over every epoch, with an ETA).
        ``rules`` (a ``RuleSet``) is needed by ``budget.rule_misses`` and ``budget.rule_hints``.
        """
        if not train:
            raise ClinsynthError("no training sentences")
        if budget.rule_misses and (rules is None or budget.recipe != "end-to-end"):
            raise ClinsynthError("rule_misses trains a hybrid's student end to end: it needs the task's rule list "
                                 "(rules.yaml) and the end-to-end recipe")  # fmt: skip
        if budget.rule_hints and (rules is None or budget.rule_misses):
            raise ClinsynthError("rule_hints shows the student the rule list's hits: it needs the task's rule list "
                                 "(rules.yaml), and is not combined with rule_misses")  # fmt: skip
        from transformers import set_seed

        names = list(taxonomy.names)
        started = time.monotonic()
        set_seed(seed)
        rng = np.random.default_rng(seed)
        # SetFit draws pairs in a fixed order; shuffling the sentences makes the seed matter.
        order = rng.permutation(len(train))
        hints = rules if budget.rule_hints else None
        texts = hinted_texts([train[i].text for i in order], hints, names)
        matrix = label_matrix([train[i].labels for i in order], names)
        curve: list[dict[str, Any]] = []
        if budget.recipe == "end-to-end":
            model = _base_model(budget, seed, differentiable=len(names) + 1)
            curve = _fit_end_to_end(model, texts, matrix, dev, names, budget, seed, show_progress, progress_label,
                                    rules if budget.rule_misses else None, hints)  # fmt: skip
        else:
            model = _base_model(budget, seed)
            _fit_contrastive(model, texts, matrix, budget, seed, rng, show_progress)

        info = ModelInfo(
            labels=names,
            thresholds={n: 0.5 for n in names},
            mix=mix,
            seed=seed,
            budget=asdict(budget),
            train_counts=label_counts(train, names),
            train_sources=dict(Counter(r.source for r in train)),
            epochs=curve,
        )
        classifier = cls(model, info)
        if hints is not None:
            classifier.read_rules(hints)
        if dev:
            dev_scores = classifier.scores([r.text for r in dev])
            info.thresholds = tune_thresholds(dev_scores, label_matrix([r.labels for r in dev], names), names)
        info.train_seconds = round(time.monotonic() - started, 1)
        return classifier

    # -- prediction -------------------------------------------------------------------

    def scores(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Per-category probabilities, one row per text (the NONE column is left out)."""
        if not texts:
            return np.zeros((0, len(self.info.labels)), dtype=np.float32)
        if self.info.budget.get("rule_hints"):
            if self.rules is None:
                raise ClinsynthError("this student reads the rule list's hits with each sentence: it needs its rules")
            texts = hinted_texts(texts, self.rules, self.info.labels)
        return _probabilities(self.model, texts, batch_size)[:, : len(self.info.labels)]

    def decide(self, scores: np.ndarray, texts: Sequence[str] | None = None) -> list[list[str]]:
        """Label sets from scores with the tuned thresholds (guideline order); a hybrid model
        also needs the ``texts`` the scores are of, for its rule hits."""
        names = self.info.labels
        if self.info.hybrid:
            from clinsynth.model.hybrid import RuleStack

            if texts is None or self.rules is None:
                raise ClinsynthError("a hybrid model decides from scores and the sentences' rule hits: pass the texts")
            stack = RuleStack.from_state(self.info.hybrid)
            return stack.predict(names, scores, texts, self.rules)
        cut = np.asarray([self.info.thresholds[n] for n in names], dtype=np.float32)
        return [[n for n, hit in zip(names, row >= cut, strict=True) if hit] for row in scores]

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        return self.decide(self.scores(texts), texts)

    # -- persistence ------------------------------------------------------------------

    def save(self, path: Path | str) -> Path:
        """A SetFit model directory plus ``clinsynth.json`` and a readable ``README.md``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # Plain SetFit reads the category names from config_setfit.json. Not multi_target_strategy:
        # SetFit 1.x's from_pretrained fails on a config holding it ("multiple values for keyword
        # argument"). The tuned thresholds (clinsynth.json) and the head (model_head.*, no pickle)
        # need clinsynth's loader, SignsClassifier.load.
        self.model.labels = list(self.info.labels)
        self.model.save_pretrained(str(path))
        # The head as safetensors + JSON instead of SetFit's pickle: loading a model runs no code.
        from clinsynth.model.safe_head import save_head

        save_head(self.model.model_head, path)
        if needs_rules(self.info) and self.rules is not None and self.rules.path is not None:
            # The copy travels with the model, so later edits of the task's list do not change it.
            (path / RULES_FILE).write_bytes(Path(self.rules.path).read_bytes())
        write_card(path, self.info)
        return path

    @classmethod
    def load(cls, path: Path | str, taxonomy: Taxonomy | None = None, trust_pickle: bool = False) -> SignsClassifier:
        """A saved classifier. A folder holding a pickle (SetFit's ``model_head.pkl``, a
        ``pytorch_model.bin``...) is refused unless ``trust_pickle``: unpickling runs code."""
        from clinsynth.model.safe_head import PICKLE_HEAD, has_safe_head, load_head, refuse_pickles

        path = Path(path)
        info = read_info(path)
        if taxonomy is not None and list(taxonomy.names) != info.labels:
            raise ClinsynthError(
                f"{path}: trained for labels {info.labels}, but the taxonomy has {list(taxonomy.names)}"
            )
        refuse_pickles(path, trust_pickle)
        safe = has_safe_head(path)
        if not safe and not (path / PICKLE_HEAD).is_file():
            # SetFit would quietly make a random head: predictions from it would be noise.
            raise ClinsynthError(f"{path}: no classifier head (model_head.safetensors); retrain the model")
        import logging

        from setfit import SetFitModel

        setfit_log = logging.getLogger("setfit.modeling")
        level = setfit_log.level
        if safe:  # SetFit warns of a "random" head it builds for lack of the pickle; ours replaces it
            setfit_log.setLevel(logging.ERROR)
        try:
            model = SetFitModel.from_pretrained(str(path), local_files_only=True)
        finally:
            setfit_log.setLevel(level)
        if safe:
            model.model_head = load_head(path, device=str(model.device))
        return cls(model, info, saved_rules(path, info))


def needs_rules(info: ModelInfo) -> bool:
    """Whether the model reads the rule list: a hybrid decides with it, a ``rule_hints`` student scores with it."""
    return bool(info.hybrid) or bool(info.budget.get("rule_hints"))


def hinted_texts(texts: Sequence[str], rules: Any, names: Sequence[str]) -> list[str]:
    """``texts`` as a ``rule_hints`` student reads them: the categories ``rules`` labels each with,
    in words, before the sentence ("rules: alcohol, tobacco. ..."; "rules: none. ..."). Without
    ``rules``, the texts as they are."""
    if rules is None:
        return list(texts)
    words = [n.lower().replace("_", " ") for n in names]
    hits = rules.hit_matrix(texts, names) > 0
    return [f"rules: {', '.join(w for w, hit in zip(words, row, strict=True) if hit) or 'none'}. {text}"
            for text, row in zip(texts, hits, strict=True)]  # fmt: skip


def saved_rules(path: Path | str, info: ModelInfo) -> Any:
    """The model's own copy of its rule list, for a model that reads one (None otherwise)."""
    if not needs_rules(info):
        return None
    from clinsynth.data.rules import load_rules

    return load_rules(Path(path) / RULES_FILE, info.labels)


def write_card(path: Path | str, info: ModelInfo) -> None:
    """``clinsynth.json`` and the readable ``README.md`` of a saved classifier, each written whole."""
    from clinsynth.data.fileio import atomic_write_text

    atomic_write_text(Path(path) / META_FILE, json.dumps(asdict(info), indent=2) + "\n")
    atomic_write_text(Path(path) / "README.md", model_card(info))


def read_info(path: Path | str) -> ModelInfo:
    """A saved classifier's ``clinsynth.json`` (labels, thresholds, ...), without loading its weights."""
    path = Path(path)
    meta = path / META_FILE
    if not meta.exists():
        raise ClinsynthError(f"{path}: not a clinsynth classifier (no {META_FILE}); train one with clinsynth train")
    return ModelInfo(**json.loads(meta.read_text(encoding="utf-8")))


def _base_model(budget: TrainingBudget, seed: int, differentiable: int = 0) -> Any:
    """The bundled encoder with a fresh head: ``differentiable`` outputs (a torch head) or LR heads."""
    from setfit import SetFitModel
    from setfit import logging as setfit_logging

    # The bundled encoder has no head yet; SetFit's note about random head weights is expected.
    setfit_logging.set_verbosity_error()

    from clinsynth.model.embeddings import model_path

    if differentiable:
        import torch

        torch.manual_seed(seed)  # the head's initial weights
        head: dict[str, Any] = {"use_differentiable_head": True, "head_params": {"out_features": differentiable}}
    else:
        head = {"head_params": {"class_weight": "balanced", "max_iter": budget.head_max_iter, "random_state": seed}}
    model = SetFitModel.from_pretrained(
        budget.encoder or str(model_path()), multi_target_strategy="one-vs-rest", local_files_only=True,
        device="cpu", **head,
    )  # fmt: skip
    model.model_body.max_seq_length = budget.max_length
    return model


def _fit_end_to_end(
    model: Any,
    texts: list[str],
    matrix: np.ndarray,
    dev: Sequence[Record] | None,
    names: list[str],
    budget: TrainingBudget,
    seed: int,
    show_progress: bool,
    progress_label: str,
    rules: Any = None,
    hints: Any = None,
) -> list[dict[str, Any]]:
    """``rules``: train on what the rule list misses, every epoch (``TrainingBudget.rule_misses``);
    ``hints``: the rule list a ``rule_hints`` student reads dev with (``texts`` come hinted already)."""
    from clinsynth.model.finetune import fine_tune

    mask = None
    if rules is not None:
        mask = np.ones_like(matrix)
        mask[:, : len(names)] = ~(rules.hit_matrix(texts, names) > 0)
    dev_score = None
    if dev and rules is None:
        dev_texts = hinted_texts([r.text for r in dev], hints, names)
        dev_gold = category_matrix([r.labels for r in dev], names)

        def dev_score() -> float:
            scores = _probabilities(model, dev_texts)[:, : len(names)]
            return threshold_f1(scores, dev_gold, names)

    curve = fine_tune(
        model,
        texts,
        matrix,
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        learning_rate=budget.learning_rate,
        head_learning_rate=budget.head_learning_rate,
        warmup=budget.warmup,
        weight_cap=budget.weight_cap,
        max_length=budget.max_length,
        seed=seed,
        dev_score=dev_score,
        patience=budget.patience,
        show_progress=show_progress,
        progress_label=progress_label,
        mask=mask,
    )
    return [asdict(e) for e in curve]


def _fit_contrastive(
    model: Any,
    texts: list[str],
    matrix: np.ndarray,
    budget: TrainingBudget,
    seed: int,
    rng: np.random.Generator,
    show_progress: bool,
) -> None:
    from setfit import Trainer, TrainingArguments

    pair_texts, pair_matrix = oversample_minority(texts, matrix, budget.min_per_category, rng)
    with tempfile.TemporaryDirectory(prefix="clinsynth-setfit-") as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            batch_size=budget.batch_size,
            num_epochs=1,
            max_steps=budget.max_steps,
            body_learning_rate=budget.body_learning_rate,
            max_length=budget.max_length,
            seed=seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            show_progress_bar=show_progress,
        )
        trainer = Trainer(model=model, args=args)
        if budget.max_steps > 0:
            trainer.train_embeddings(pair_texts, pair_matrix.tolist(), args)
        trainer.train_classifier(texts, matrix.tolist(), args)


def _probabilities(model: Any, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    probabilities = model.predict_proba(list(texts), batch_size=batch_size, as_numpy=True, show_progress_bar=False)
    return np.asarray(probabilities, dtype=np.float32)


def threshold_f1(scores: np.ndarray, gold: np.ndarray, names: Sequence[str]) -> float:
    """Mean of micro and macro F1 with thresholds tuned on the same data: how epochs are chosen.

    Optimistic as an estimate, but the same optimism for every epoch, so it ranks them;
    macro counts only categories with positives (the others have no F1 to speak of).
    """
    thresholds = tune_thresholds(scores, gold, names)
    return micro_macro_f1(scores >= np.asarray([thresholds[n] for n in names], dtype=np.float32), gold)


def _recipe_words(budget: dict[str, Any]) -> str:
    if budget.get("recipe", "contrastive") == "end-to-end":
        return (
            "encoder and a sigmoid head trained end to end with class-weighted BCE, best epoch on gold dev"
        )
    return "contrastive fine-tuning, then one logistic-regression head per category, `class_weight=balanced`"


def _body_words(budget: dict[str, Any]) -> str:
    encoder = budget.get("encoder")
    return f"`{Path(encoder).name}`" if encoder else "all-MiniLM-L6-v2"


def model_card(info: ModelInfo) -> str:
    """A short card: what it detects, what it was trained on, how well it did."""
    from clinsynth.report import format_table

    lines = [
        f"# clinsynth classifier: {info.title or info.task or 'custom task'}",
        "",
        f"Multi-label SetFit classifier ({_body_words(info.budget)} body; {_recipe_words(info.budget)}) for the",
        f"categories of task `{info.task or '-'}` in sentences of clinical notes. An empty label set means NONE.",
        "",
        f"- training mix: `{info.mix}`, seed {info.seed}, trained {info.created_at} in {info.train_seconds:.0f} s",
        f"- training sentences by source: {json.dumps(info.train_sources)}",
        f"- budget: {json.dumps(info.budget)}",
        "- head: one probability per category (SetFit `multi_target_strategy` one-vs-rest), saved without pickle;"
        " load with `clinsynth.model.classifier.SignsClassifier.load(folder)`, which applies the thresholds below",
        *[f"- data: `{path}` sha256 `{digest}`" for path, digest in info.data_files.items()],
        *(["- LLM check: each label the student adds beyond the rule list"
           + (f" with a score under {info.llm_check['below']}" if "below" in info.llm_check else "")
           + f" is kept only if the task's `{info.llm_check.get('role', 'labeler')}` LM agrees (chosen by "
           f"`{info.llm_check.get('chosen_by', '-')}`); `clinsynth predict` applies it, the scores below are "
           "without it"] if info.llm_check else []),
        "",
        *([f"- epochs (loss, dev score): {[(e['epoch'], e['loss'], e['dev_score']) for e in info.epochs]}"]
          if info.epochs else []),
        "",
        "## Training data and thresholds",
        "",
        format_table(
            ["category", "training sentences", "threshold (tuned on gold dev)"],
            [[n, info.train_counts.get(n, 0), info.thresholds.get(n, 0.5)] for n in info.labels]
            + [[NONE_LABEL, info.train_counts.get(NONE_LABEL, 0), "-"]],
        ),
    ]
    for split, scores in (("gold dev", info.dev_scores), ("gold test", info.test_scores)):
        if not scores:
            continue
        lines += [
            "",
            f"## Scores on {split} (n={scores.get('n')})",
            "",
            format_table(
                ["metric", "value"],
                [[k, scores[k]] for k in ("micro_f1", "macro_f1", "binary_f1", "multiclass_macro_f1") if k in scores],
            ),
            *([f"\n{scores['left_out']} test sentences whose text is also in gold train or dev (or their whole "
               "notes) are left out."] if scores.get("left_out") else []),
        ]
    lines += [
        "",
        "Load with `clinsynth.model.classifier.SignsClassifier.load(path)` or use `clinsynth predict --model path`.",
        "",
    ]
    return "\n".join(lines)

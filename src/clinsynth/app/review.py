"""Human review with Label Studio: export sentences worth a look, import the annotations as gold.

``export_review`` writes a Label Studio tasks file (``[{"data": {...}, "predictions": [...]}]``)
and, beside it, the matching labelling config (``<out stem>.config.xml``), so a team imports
both as they are. ``import_review`` reads a Label Studio JSON export, validates it whole,
and only then writes gold records into the task's gold split (or, for bronze sentences,
the accept/reject verdicts into ``<bronze>.rejected.jsonl``, which the bronze mix part
leaves out).

Rules the import applies:

- an annotation with ``was_cancelled`` is skipped; a task left with no annotation is skipped;
- the gold label set is the one of the annotation marked ``ground_truth`` (Label Studio's
  "mark as ground truth", used here as the adjudication), else that of the first
  annotation in the export's order (Label Studio lists them as they were made);
- agreement: Cohen's kappa per category between the first two independent annotations,
  over the tasks that have both. A task's two annotations count whether or not one was
  then marked ground truth (the adjudicated disagreements are the ones that must count);
  an adjudication added as a further annotation is left out. Bronze ACCEPT/REJECT verdicts
  get the same kappa and the share of pairs that agree;
- no category selected means NONE (``labels: []``).
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from clinsynth.data.fileio import atomic_write_text, read_text
from clinsynth.data.gold import SPLITS
from clinsynth.data.mixes import rejected_path
from clinsynth.data.records import (
    InputItem,
    Provenance,
    Record,
    decode_json,
    iter_jsonl,
    read_inputs,
    read_records,
    write_records,
)
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import ClinsynthError, DataError

SOURCES = ("corpus", "silver", "bronze")  # anything else is a file path
STRATEGIES = ("uncertain", "random")
LABELS_NAME = "labels"  # the <Choices> of the categories
VERDICT_NAME = "verdict"  # the ACCEPT/REJECT <Choices> of a bronze review
ACCEPT, REJECT = "ACCEPT", "REJECT"
# Scoring the whole corpus with the classifier costs minutes on a CPU for no better picks:
# the uncertain strategy scores a seeded random pool of candidates of at most this size.
DEFAULT_POOL = 5000


@dataclass(frozen=True)
class Candidate:
    """A sentence that may be exported, with the labels to pre-annotate it with (None = ask the model)."""

    item: InputItem
    labels: list[str] | None = None
    score: float | None = None  # the labeller's confidence, for silver/bronze
    model_version: str | None = None


@dataclass
class ExportResult:
    out: Path
    config: Path
    exported: int
    uncertain: int
    random: int
    candidates: int


@dataclass
class ImportResult:
    out: Path | None  # the gold split written (None: no gold task in the export)
    written: int = 0  # new gold records
    replaced: int = 0  # records already in the split with the same id, replaced by the review
    cancelled: int = 0  # cancelled annotations skipped
    unannotated: int = 0  # tasks without any annotation, skipped
    accepted: int = 0  # bronze verdicts
    rejected: int = 0
    rejected_path: Path | None = None
    double_annotated: int = 0  # tasks with two independent annotations (kappa base)
    kappa: dict[str, float | None] = field(default_factory=dict)  # per category, and NONE for any-vs-none
    double_verdicts: int = 0  # bronze tasks with two independent verdicts
    verdict_kappa: float | None = None  # Cohen's kappa of ACCEPT/REJECT over them
    verdict_agreement: float | None = None  # share of them where both verdicts agree


# -- export -------------------------------------------------------------------------------


def config_path(out: Path | str) -> Path:
    """The labelling config written beside a tasks file: ``tasks.json`` -> ``tasks.config.xml``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.config.xml")


def label_config(taxonomy: Taxonomy, bronze: bool = False) -> str:
    """A Label Studio labelling config: the sentence, one checkbox per category (none = NONE)."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(c.name)} hint={quoteattr(c.definition)}/>" for c in taxonomy.categories
    )
    header = f"{taxonomy.title}: select every category the sentence shows; select none for {NONE_LABEL}"
    lines = [
        "<View>",
        f"  <Header value={quoteattr(header)}/>",
        '  <Text name="text" value="$text"/>',
        f'  <Choices name="{LABELS_NAME}" toName="text" choice="multiple" showInLine="false">',
        choices,
        "  </Choices>",
    ]
    if bronze:
        # Generated sentences can be unusable whatever their labels (unrealistic, leaking,
        # off-topic): the verdict lets a clinician take them out of the mix.
        lines += [
            '  <Header value="Is this generated sentence fit for training?"/>',
            f'  <Choices name="{VERDICT_NAME}" toName="text" choice="single" required="true">',
            f'    <Choice value="{ACCEPT}"/>',
            f'    <Choice value="{REJECT}"/>',
            "  </Choices>",
        ]
    return "\n".join([*lines, "</View>", ""])


def _gold_notes(task: Any) -> dict[str, str]:
    """note_id -> split over the task's existing gold files."""
    notes: dict[str, str] = {}
    for split in SPLITS:
        path = task.split_path(split)
        if path.exists():
            for _, obj in iter_jsonl(path):
                if isinstance(obj, dict) and isinstance(obj.get("note_id"), str):
                    notes.setdefault(obj["note_id"], split)
    return notes


def _candidates(task: Any, source: str) -> list[Candidate]:
    """What may be exported from ``source``: the task's corpus, silver or bronze set, or a file."""
    if source == "corpus":
        from clinsynth.programs.steps.label import corpus_items

        # Gold notes are already annotated (and dev/test ones must never be reviewed into train).
        items = corpus_items(task.corpus, exclude_notes=set(_gold_notes(task)))
        return [Candidate(i) for i in items]
    if source in ("silver", "bronze"):
        path = task.silver if source == "silver" else task.bronze
        if not Path(path).exists():
            raise DataError(f"no {source} set here; make it first (clinsynth run, or make {source})", path=path)
        candidates = _labelled_candidates(path, task.taxonomy, source)
        if source == "silver":  # sentences of corpus notes: gold notes are left out as for the corpus
            gold_notes = set(_gold_notes(task))
            candidates = [c for c in candidates if c.item.note_id not in gold_notes]
        return candidates
    path = Path(source)
    if _is_labelled(path):
        # The output of `clinsynth label` on some sentences: its LLM labels pre-annotate them,
        # which is how a new task's first gold set is started before any classifier exists.
        return _labelled_candidates(path, task.taxonomy, path.name)
    return [Candidate(InputItem(i.id, i.text, i.note_id, source=i.source or path.name)) for i in read_inputs(path)]


def _is_labelled(path: Path) -> bool:
    """A JSONL file whose first record has a ``labels`` field (records, not plain inputs)."""
    if path.suffix != ".jsonl" or not path.is_file():
        return False
    for _, obj in iter_jsonl(path):
        return isinstance(obj, dict) and "labels" in obj
    return False


def _labelled_candidates(path: Path | str, taxonomy: Taxonomy, source: str) -> list[Candidate]:
    out = []
    for r in read_records(path, taxonomy):
        prov = r.provenance
        out.append(
            Candidate(
                InputItem(id=r.id, text=r.text, note_id=r.note_id, source=source),
                labels=list(r.labels),
                score=prov.confidence if prov else None,
                model_version=f"{source}:{prov.lm}" if prov else source,
            )
        )
    return out


def _load_model(task: Any) -> Any | None:
    """The task's default classifier, or None when it has not been trained."""
    from clinsynth.model.classifier import META_FILE, SignsClassifier

    if not (Path(task.model_dir) / META_FILE).exists():
        return None
    return SignsClassifier.load(task.model_dir, task.taxonomy)


def margins(scores: Any, thresholds: Sequence[float]) -> list[float]:
    """Per sentence, the distance of its closest category score to that category's threshold.

    A score at its threshold is a coin toss for the model: the smaller the margin, the more a
    human label teaches it.
    """
    import numpy as np

    return np.abs(np.asarray(scores) - np.asarray(thresholds, dtype=np.float32)).min(axis=1).tolist()


def select(
    n_items: int, n: int, uncertainty: Sequence[float] | None, random_share: float, rng: random.Random
) -> list[tuple[int, str]]:
    """Indices to export and why: the ``n`` most uncertain less a random share, then random ones."""
    n = min(n, n_items)
    k_uncertain = 0 if uncertainty is None else n - round(n * random_share)
    order = sorted(range(n_items), key=lambda i: (uncertainty[i], i)) if uncertainty is not None else []
    picked = [(i, "uncertain") for i in order[:k_uncertain]]
    taken = {i for i, _ in picked}
    rest = [i for i in range(n_items) if i not in taken]
    picked += [(i, "random") for i in rng.sample(rest, n - k_uncertain)]
    # Shuffled, so an annotator cannot tell the model's hard cases from the random ones.
    rng.shuffle(picked)
    return picked


def _prediction(labels: list[str], score: float | None, model_version: str) -> dict[str, Any]:
    # An empty label set (NONE) is an empty result: Label Studio shows no box ticked.
    result = (
        [{"from_name": LABELS_NAME, "to_name": "text", "type": "choices", "value": {"choices": labels}}]
        if labels
        else []
    )
    out: dict[str, Any] = {"model_version": model_version, "result": result}
    if score is not None:
        out["score"] = round(float(score), 4)
    return out


def export_review(
    task: Any,
    source: str,
    n: int,
    strategy: str = "uncertain",
    seed: int = 0,
    out: Path | str | None = None,
    random_share: float = 0.2,
    pool: int | None = DEFAULT_POOL,
) -> ExportResult:
    """Write ``n`` sentences of ``source`` as Label Studio tasks to ``out``, and the config beside it."""
    if strategy not in STRATEGIES:
        raise ClinsynthError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    if n <= 0:
        raise ClinsynthError(f"--n must be positive, got {n}")
    if not 0.0 <= random_share <= 1.0:
        raise ClinsynthError(f"random share must be between 0 and 1, got {random_share}")
    out = Path(out) if out is not None else task.output_dir / "review" / f"{Path(source).stem}-tasks.json"
    model = _load_model(task)
    if strategy == "uncertain" and model is None:
        raise ClinsynthError(
            f"the uncertain strategy needs the task's classifier, and {task.model_dir} has none; "
            "train one (clinsynth train) or use --strategy random"
        )
    rng = random.Random(seed)
    candidates = _candidates(task, source)
    if not candidates:
        raise DataError(f"no sentences to review in {source}")
    total = len(candidates)
    if strategy == "uncertain" and pool is not None and pool < len(candidates):
        candidates = rng.sample(candidates, pool)
    scores = model.scores([c.item.text for c in candidates]) if model is not None else None
    uncertainty = None
    if strategy == "uncertain" and scores is not None:
        uncertainty = margins(scores, [model.info.thresholds[name] for name in model.info.labels])
    picked = select(len(candidates), n, uncertainty, random_share, rng)
    model_version = f"clinsynth:{task.name}:{model.info.mix}:{model.info.created_at}" if model is not None else ""
    tasks = []
    for index, why in picked:
        cand = candidates[index]
        data: dict[str, Any] = {"text": cand.item.text, "id": cand.item.id}
        if cand.item.note_id is not None:
            data["note_id"] = cand.item.note_id
        data["source"] = source if source in SOURCES else (cand.item.source or "file")
        data["selected_by"] = why
        predictions = []
        if cand.labels is not None:  # silver / bronze: the LLM's labels, as given
            predictions.append(_prediction(cand.labels, cand.score, cand.model_version or source))
        elif scores is not None:
            row = scores[index]
            data["scores"] = {name: round(float(p), 4) for name, p in zip(model.info.labels, row, strict=True)}
            labels = model.decide(row[None, :], [cand.item.text])[0]
            margin = uncertainty[index] if uncertainty is not None else margins(row[None, :], _cuts(model))[0]
            predictions.append(_prediction(labels, margin, model_version))
        tasks.append({"data": data, "predictions": predictions})
    config = config_path(out)
    atomic_write_text(out, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(config, label_config(task.taxonomy, bronze=source == "bronze"))
    n_uncertain = sum(why == "uncertain" for _, why in picked)
    return ExportResult(out, config, len(tasks), n_uncertain, len(tasks) - n_uncertain, total)


def _cuts(model: Any) -> list[float]:
    return [model.info.thresholds[name] for name in model.info.labels]


# -- import -------------------------------------------------------------------------------


@dataclass
class _Annotation:
    annotator: str
    labels: list[str]
    verdict: str | None
    ground_truth: bool


@dataclass
class _Reviewed:
    task_id: Any
    data: dict[str, Any]
    annotations: list[_Annotation]


def _annotator(value: Any, path: Path, where: str, fieldname: str) -> str:
    """Label Studio gives ``completed_by`` as a user id, or a dict with ``id`` / ``email``."""
    if isinstance(value, dict):
        value = value.get("id", value.get("email"))
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        raise DataError(f"{where}: missing annotator id (int, or a dict with 'id' or 'email')", path, field=fieldname)
    return str(value)


def _parse_annotation(ann: Any, taxonomy: Taxonomy, path: Path, where: str, prefix: str) -> _Annotation | None:
    """One annotation's labels and verdict; None when cancelled."""
    if not isinstance(ann, dict):
        raise DataError(f"{where}: an annotation must be a JSON object", path, field=prefix)
    if ann.get("was_cancelled"):
        return None
    annotator = _annotator(ann.get("completed_by"), path, where, f"{prefix}.completed_by")
    result = ann.get("result")
    if not isinstance(result, list):
        raise DataError(f"{where}: missing or not a list", path, field=f"{prefix}.result")
    labels: list[str] = []
    verdict = None
    for j, item in enumerate(result):
        name = f"{prefix}.result[{j}]"
        if not isinstance(item, dict) or item.get("type", "choices") != "choices":
            continue  # other controls (a comment box) carry no label
        choices = (item.get("value") or {}).get("choices") if isinstance(item.get("value"), dict) else None
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            raise DataError(f"{where}: missing or not a list of strings", path, field=f"{name}.value.choices")
        if item.get("from_name") == VERDICT_NAME:
            bad = [c for c in choices if c not in (ACCEPT, REJECT)]
            if bad or len(choices) != 1:
                raise DataError(f"{where}: expected one of {ACCEPT}/{REJECT}, got {choices}", path, field=name)
            verdict = choices[0]
            continue
        if item.get("from_name", LABELS_NAME) != LABELS_NAME:
            raise DataError(
                f"{where}: unknown control {item.get('from_name')!r}; the config has "
                f"{LABELS_NAME!r} and {VERDICT_NAME!r}",
                path,
                field=f"{name}.from_name",
            )
        # NONE spelled out is the empty set; anything else must be a category of the taxonomy.
        unknown = taxonomy.unknown_labels([c for c in choices if c != NONE_LABEL])
        if unknown:
            raise DataError(
                f"{where}: unknown label(s) {unknown} (taxonomy {taxonomy.name!r}: {', '.join(taxonomy.names)})",
                path,
                field=f"{name}.value.choices",
            )
        labels.extend(c for c in choices if c != NONE_LABEL)
    return _Annotation(annotator, taxonomy.canonical(labels), verdict, bool(ann.get("ground_truth")))


def read_export(path: Path | str, taxonomy: Taxonomy) -> tuple[list[_Reviewed], int]:
    """Every task of a Label Studio JSON export, validated; and the number of cancelled annotations."""
    path = Path(path)
    if not path.exists():
        raise DataError("export file not found", path)
    tasks = decode_json(read_text(path), path)
    if not isinstance(tasks, list):
        raise DataError("expected a Label Studio JSON export: a list of tasks", path)
    reviewed: list[_Reviewed] = []
    cancelled = 0
    seen: dict[str, Any] = {}
    for i, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise DataError(f"task #{i}: must be a JSON object", path)
        task_id = task.get("id", f"#{i}")
        where = f"task {task_id}"
        data = task.get("data")
        if not isinstance(data, dict):
            raise DataError(f"{where}: missing", path, field="data")
        for key in ("text", "id"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise DataError(f"{where}: missing or not a non-empty string", path, field=f"data.{key}")
        if data["id"] in seen:
            raise DataError(
                f"{where}: sentence id {data['id']!r} also in task {seen[data['id']]}", path, field="data.id"
            )
        seen[data["id"]] = task_id
        raw = task.get("annotations")
        if not isinstance(raw, list):
            raise DataError(f"{where}: missing or not a list", path, field="annotations")
        annotations = []
        for k, ann in enumerate(raw):
            parsed = _parse_annotation(ann, taxonomy, path, where, f"annotations[{k}]")
            if parsed is None:
                cancelled += 1
            else:
                annotations.append(parsed)
        reviewed.append(_Reviewed(task_id, data, annotations))
    return reviewed, cancelled


def independent(annotations: list[_Annotation]) -> list[_Annotation]:
    """The annotations agreement compares: all, less an adjudication added beyond the first two.

    Label Studio's "mark as ground truth" on one of two annotations picks the winner of a
    disagreement: both stay (dropping them would count only the agreements).
    """
    if len(annotations) > 2:
        return [a for a in annotations if not a.ground_truth]
    return annotations


def verdict_agreement(pairs: list[tuple[str, str]]) -> tuple[float | None, float | None]:
    """Cohen's kappa of ACCEPT/REJECT verdict pairs and the share that agree (None, None without pairs)."""
    if not pairs:
        return None, None
    from sklearn.metrics import cohen_kappa_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs], labels=[ACCEPT, REJECT]))
    share = sum(a == b for a, b in pairs) / len(pairs)
    return (None if math.isnan(value) else round(value, 4)), round(share, 4)


def decided(annotations: list[_Annotation]) -> _Annotation:
    """The annotation that sets the gold label: the adjudication (ground truth), else the first."""
    return next((a for a in annotations if a.ground_truth), annotations[0])


def kappas(pairs: list[tuple[list[str], list[str]]], names: Sequence[str]) -> dict[str, float | None]:
    """Cohen's kappa per category (and NONE: any category vs none) over doubly annotated tasks.

    None where kappa is undefined: both passes gave the same single answer to every task.
    """
    from sklearn.metrics import cohen_kappa_score

    out: dict[str, float | None] = {}
    for name in (*names, NONE_LABEL):
        a = [int(name in x) if name != NONE_LABEL else int(not x) for x, _ in pairs]
        b = [int(name in y) if name != NONE_LABEL else int(not y) for _, y in pairs]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(cohen_kappa_score(a, b)) if pairs else math.nan
        out[name] = None if math.isnan(value) else round(value, 4)
    return out


def _rejections(path: Path) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for _, obj in iter_jsonl(path) if isinstance(obj, dict)} if path.exists() else {}


ANNOTATOR_KINDS = ("human", "model")


def import_review(task: Any, input: Path | str, split: str | None, out: Path | str | None = None,
                  annotator_kind: str = "human", annotator_model: str | None = None) -> ImportResult:  # fmt: skip
    """Validate a Label Studio export whole, then write its gold records and bronze verdicts.

    Gold records go to ``out`` (default: the task's ``split`` file), appended to what is
    there; a sentence already there is replaced by its review. Nothing is written when any
    task is invalid or a note would cross splits.
    """
    input = Path(input)
    if annotator_kind not in ANNOTATOR_KINDS or (annotator_kind == "model") != bool(annotator_model):
        raise ClinsynthError("annotator kind is 'human' (people annotated) or 'model' with the model's name "
                             "(--annotator-kind model --annotator-model NAME)")  # fmt: skip
    taxonomy = task.taxonomy
    reviewed, cancelled = read_export(input, taxonomy)
    result = ImportResult(out=None, cancelled=cancelled)
    gold: list[Record] = []
    verdicts: dict[str, tuple[str, _Annotation]] = {}
    pairs: list[tuple[list[str], list[str]]] = []
    verdict_pairs: list[tuple[str, str]] = []
    for rev in reviewed:
        if not rev.annotations:
            result.unannotated += 1
            continue
        passes = independent(rev.annotations)
        if len(passes) >= 2:
            pairs.append((passes[0].labels, passes[1].labels))
        final = decided(rev.annotations)
        if rev.data.get("source") == "bronze":
            given = [a.verdict for a in passes if a.verdict]
            if len(given) >= 2:
                verdict_pairs.append((given[0], given[1]))
            # Generated sentences never become gold (no note, not real text): only the verdict counts.
            verdict = final.verdict or next((a.verdict for a in rev.annotations if a.verdict), None)
            if verdict is None:
                raise DataError(f"task {rev.task_id}: bronze sentence without an {ACCEPT}/{REJECT} verdict",
                                input, field="annotations[].result")  # fmt: skip
            verdicts[rev.data["id"]] = (verdict, final)
            continue
        note = rev.data.get("note_id")
        if not isinstance(note, str) or not note:
            raise DataError(f"task {rev.task_id}: missing (gold is split by note)", input, field="data.note_id")
        gold.append(
            Record(
                id=rev.data["id"],
                text=rev.data["text"].strip(),
                labels=final.labels,
                source="gold",
                note_id=note,
                split=split,
                provenance=Provenance(
                    # "human" means a person; annotations a model made name the model.
                    lm="human" if annotator_kind == "human" else f"model: {annotator_model}",
                    program="label-studio review",
                    program_sha256="",
                    attributes={
                        "annotator_kind": annotator_kind,
                        "annotators": [a.annotator for a in rev.annotations],
                        "decided_by": final.annotator,
                        "adjudicated": final.ground_truth,
                        "label_studio_task": rev.task_id,
                    },
                ),
            )
        )
    result.double_annotated = len(pairs)
    if pairs:
        result.kappa = kappas(pairs, taxonomy.names)
    result.double_verdicts = len(verdict_pairs)
    result.verdict_kappa, result.verdict_agreement = verdict_agreement(verdict_pairs)
    target = _check_gold(task, gold, split, out, input)
    # Everything is valid: write. Each file is replaced atomically.
    if target is not None:
        existing = read_records(target, taxonomy) if target.exists() else []
        new_ids = {r.id for r in gold}
        result.replaced = sum(r.id in new_ids for r in existing)
        result.written = len(gold) - result.replaced
        write_records(target, [r for r in existing if r.id not in new_ids] + gold)
        result.out = target
    if verdicts:
        path = rejected_path(task.bronze)
        rejected = _rejections(path)
        for rid, (verdict, ann) in verdicts.items():
            if verdict == REJECT:
                rejected[rid] = {"id": rid, "annotator": ann.annotator, "input": input.name}
            else:
                rejected.pop(rid, None)  # the latest review wins: an accepted sentence returns to the mix
        result.rejected = sum(v == REJECT for v, _ in verdicts.values())
        result.accepted = len(verdicts) - result.rejected
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejected.values()))
        result.rejected_path = path
    return result


def _check_gold(task: Any, gold: list[Record], split: str | None, out: Path | str | None, input: Path) -> Path | None:
    """The file the gold records go to, after checking the split and that no note crosses splits."""
    if not gold:
        return None
    if split not in SPLITS:
        raise ClinsynthError(f"the export has {len(gold)} sentence(s) for gold: give --split, one of {SPLITS}")
    homes = _gold_notes(task)
    for rec in gold:
        home = homes.get(rec.note_id or "")
        if home is not None and home != split:
            raise DataError(
                f"note {rec.note_id!r} (sentence {rec.id!r}) is already in the gold {home} split and would "
                f"also be in {split}; gold is split by note: import it into {home}",
                input,
                field="data.note_id",
            )
    return Path(out) if out is not None else task.split_path(split)

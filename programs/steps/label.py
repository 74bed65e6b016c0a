"""The data-to-label step: label corpus sentences (silver) or a file's with DataToLabel.

Uses the task's compiled labeller for the LM when there is one. Writes records with
provenance and confidence to ``out`` (JSONL) through the resumable map, then the same
records as parquet (``<out>.parquet``). On the corpus, ``prefilter`` sends the LM the
sentences most similar to the taxonomy's categories plus a share of random others,
instead of a random sample that would be almost all NONE; gold dev/test notes are never
labelled (they would leak into training data).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinsynth.programs.data_to_label import MAX_TOKENS, DataToLabel
from clinsynth.programs.labellers import load_labeller
from clinsynth.programs.steps.silver import ROLE, make_record

from clinsynth.data import prefilter
from clinsynth.data.corpus import iter_sentences
from clinsynth.data.gold import held_out_notes
from clinsynth.data.privacy import SOURCE_SENSITIVITY, Sensitivity
from clinsynth.data.records import InputItem, Record, done_ids, export_parquet, read_inputs, read_records
from clinsynth.data.task import LMSpec, Task
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.errors import ClinsynthError
from clinsynth.fingerprint import program_sha256
from clinsynth.jobs.engine_ray import RayEngine
from clinsynth.jobs.resumable import MapSettings, check_resume_matches, resumable_map
from clinsynth.jobs.runner import Attempt
from clinsynth.llm.adapters import make_adapter
from clinsynth.llm.compiled import default_compiled
from clinsynth.llm.cost import (
    CostPlan,
    PlanLine,
    answer_tokens,
    planned_endpoint,
    prompt_messages,
    shared_prefix_tokens,
)
from clinsynth.llm.lm import default_adapter
from clinsynth.llm.meter import log_run
from clinsynth.llm.pricing import count_tokens
from clinsynth.llm.session import Content, admit, gate, open_lm

# A task's silver set unless its [label] table says otherwise: the prefiltered 2,000 of a
# random 30,000-sentence pool (scoring the whole corpus costs minutes for no better picks).
SILVER_DEFAULTS: dict[str, Any] = {"prefilter": True, "limit": 2000, "pool": 30000}


@dataclass(frozen=True)
class LabelConfig:
    input: Path | None = None  # JSONL / CSV / TXT; None = the task's public corpus
    sensitivity: Sensitivity | None = None  # of ``input``; None = private (a user's file)
    limit: int | None = None  # label at most N sentences
    prefilter: bool = False  # corpus: pick sentences similar to the categories
    negatives: float = 0.2  # prefilter: share of random other sentences
    pool: int | None = None  # prefilter: score a random pool of N corpus sentences only
    program: Path | None = None  # compiled DataToLabel; None = the task's for this LM
    zero_shot: bool = False  # ignore compiled programs
    samples: int = 1  # k > 1: confidence = agreement of k answers (k x cost)
    seed: int = 0
    lm: LMSpec | None = None  # None = the task's labeller
    map: MapSettings = MapSettings()
    parquet: bool = True  # also write <out>.parquet
    ray: RayEngine | None = None  # None: label in this process; else on Ray actors (programs.steps.ray_label)

    @classmethod
    def for_silver(cls, task: Task, **overrides: Any) -> LabelConfig:
        """The settings that make the task's silver set: its ``[label]`` table, then ``overrides``."""
        return cls(**{**SILVER_DEFAULTS, **task.silver_settings, **overrides})


@dataclass
class LabelResult:
    out: Path
    labelled: int = 0
    skipped: int = 0
    failed: int = 0
    label_counts: Counter = field(default_factory=Counter)
    program: Path | None = None
    lm: str = ""
    failures_path: Path | None = None
    nothing_to_do: bool = False
    usage: dict[str, Any] | None = None  # this run's real calls, tokens and cost (clinsynth.llm.meter)


def corpus_items(
    path: Path,
    limit: int | None = None,
    sample_seed: int | None = None,
    exclude_notes: set[str] | frozenset[str] = frozenset(),
) -> list[InputItem]:
    """Corpus sentences in corpus order, or a seeded random sample of them (stable for resume)."""
    items = [
        InputItem(id=s.id, text=s.text, note_id=s.note_id, source="corpus")
        for s in iter_sentences(path)
        if s.note_id not in exclude_notes
    ]
    if sample_seed is not None:
        random.Random(sample_seed).shuffle(items)
    return items[:limit] if limit is not None else items


def input_sensitivity(
    items: list[InputItem], declared: Sensitivity | None, path: Path | None, gold_dir: Path | None = None
) -> Sensitivity:
    """Gold (marked, or under the task's gold folder) is private whatever is declared; user files default private."""
    if any(SOURCE_SENSITIVITY.get(i.source or "") is Sensitivity.PRIVATE for i in items):
        return Sensitivity.PRIVATE
    if path is not None:
        resolved = Path(path).resolve()
        if "gold" in resolved.parts or (gold_dir is not None and resolved.is_relative_to(Path(gold_dir).resolve())):
            return Sensitivity.PRIVATE
    if declared is not None:
        return declared
    return Sensitivity.PRIVATE if path is not None else Sensitivity.PUBLIC


def default_labeller_path(task: Task, spec: LMSpec) -> Path | None:
    """The task's compiled labeller for this LM and endpoint, if there is one."""
    return default_compiled(task, "data_to_label", spec)


def prefiltered_items(
    items: list[InputItem], taxonomy: Taxonomy, n: int, negatives: float, seed: int, pool: int | None
) -> tuple[list[InputItem], dict[str, dict[str, Any]]]:
    """The prefilter's selection and, per id, what it recorded (score, nearest category, negative)."""
    from clinsynth.model.embeddings import encode_cached

    if pool is not None and pool < len(items):
        items = random.Random(seed).sample(items, pool)
    selection = prefilter.select(items, taxonomy, n, encode_cached, negative_fraction=negatives, seed=seed)
    attributes = {
        i.id: {
            "prefilter_score": round(selection.scores[i.id], 4),
            "prefilter_nearest": selection.nearest[i.id],
            "sampled_negative": i.id not in selection.relevant,
        }
        for i in selection.items
    }
    return selection.items, attributes


def select_items(task: Task, config: LabelConfig, planning: bool = False
                 ) -> tuple[list[InputItem], dict[str, dict[str, Any]], Content]:  # fmt: skip
    """What to label, per-item attributes (prefilter), and what the prompts will carry.

    ``planning`` (a dry run): a seeded random sample of the pool stands in for the prefilter's
    pick, which would embed the whole corpus; the prompts it plans are as long as the pick's.
    """
    if config.input is not None:
        items = read_inputs(config.input)[: config.limit]
        sensitivity = input_sensitivity(items, config.sensitivity, config.input, task.gold_dir)
        return items, {}, Content(str(config.input), sensitivity)
    exclude = held_out_notes(task.gold_dir)
    content = Content(f"public corpus {task.relative(task.corpus)}", Sensitivity.PUBLIC)
    if config.prefilter:
        pool = corpus_items(task.corpus, exclude_notes=exclude)
        n = config.limit or len(pool)
        if planning:
            return random.Random(config.seed).sample(pool, min(n, len(pool))), {}, content
        items, attributes = prefiltered_items(pool, task.taxonomy, n, config.negatives, config.seed, config.pool)
        return items, attributes, content
    return corpus_items(task.corpus, limit=config.limit, exclude_notes=exclude), {}, content


@dataclass
class _Job:
    """What a labelling run sends: the LM, the program and the items (shared by the run and its cost plan)."""

    spec: LMSpec
    program_path: Path | None
    program: DataToLabel
    items: list[InputItem]
    attributes: dict[str, dict[str, Any]]
    content: Content
    program_label: str  # how the privacy check and the run log name the program

    def gate(self, task: Task) -> None:
        """The privacy check (PrivacyError), before any server starts or anything is sent."""
        gate(self.spec, ROLE, task.privacy, [self.content], {self.program_label: self.program}, env_folders=[task.root])


def _job(task: Task, config: LabelConfig, planning: bool = False) -> _Job:
    spec = config.lm or task.lm(ROLE)
    program_path = None if config.zero_shot else config.program or default_labeller_path(task, spec)
    program = load_labeller(task.taxonomy, program_path, samples=config.samples)
    items, attributes, content = select_items(task, config, planning)
    program_label = str(task.relative(program_path)) if program_path else "zero-shot DataToLabel"
    return _Job(spec, program_path, program, items, attributes, content, program_label)


def _input_name(task: Task, config: LabelConfig) -> str:
    return task.relative(config.input) if config.input is not None else f"the corpus {task.relative(task.corpus)}"


def plan_labelling(task: Task, config: LabelConfig, out: Path | None = None) -> CostPlan:
    """The cost plan of ``label_sentences`` (``--dry-run``): nothing is opened, started or sent.

    Counts the prompt of every sentence still to label (those in ``out`` are skipped, as a
    rerun would) as the run's adapter formats it, and records whether the privacy gate
    would refuse the real run.
    """
    job = _job(task, config, planning=True)
    endpoint, refused = planned_endpoint(job.spec, lambda: job.gate(task))
    sampled = config.input is None and config.prefilter
    if out is not None and not sampled:
        check_resume_matches(out, {i.id: i.text for i in job.items}, _input_name(task, config))
    done = done_ids(out) if out is not None else set()
    if sampled:  # which corpus sentences are done is known only after the prefilter: count them off
        todo = job.items[: max(0, len(job.items) - len(done))]
    else:
        todo = [i for i in job.items if i.id not in done]
    adapter = make_adapter(default_adapter(job.spec.model))
    predictor = job.program.label
    model = job.spec.model
    demos = None
    plan = CostPlan("label", model, endpoint, refused=refused, max_cost=config.map.limits.max_cost)
    if job.program.demo_pool and job.program.knn_k:
        demos = job.program.demo_pool[: job.program.knn_k]
        plan.assumptions.append(f"kNN demos: {job.program.knn_k} per sentence, counted as the pool's first ones")
    prompts = [prompt_messages(predictor, adapter, {"sentence": i.text}, demos) for i in todo]
    prompt = sum(count_tokens(model, messages) for messages in prompts)
    answer = answer_tokens(model, predictor, adapter, job.program.typical_answer())
    max_tokens = int(predictor.config.get("max_tokens") or MAX_TOKENS)
    k = config.samples
    calls = len(todo) * k
    what = f"label {len(todo)} sentences" + (f" x {k} samples" if k > 1 else "")
    plan.lines.append(PlanLine(what, calls, prompt * k, answer * calls, max_tokens * calls,
                               shared_prefix_tokens(model, prompts[:2])))  # fmt: skip
    plan.assumptions += [
        f"program: {job.program_label}; {len(predictor.demos)} demos in every prompt",
        f"completion: {answer} tokens an answer (one label, as the adapter asks it written)",
        "no retries and no DSPy cache hits (a retry costs another call; a cached answer nothing)",
    ]
    if sampled:
        plan.assumptions.append(
            f"sentences: a random sample of {len(job.items)} corpus sentences stands in for the relevance "
            "prefilter's pick (choosing needs the encoder; a dry run embeds nothing)"
        )
    if done:
        plan.assumptions.append(f"{len(job.items) - len(todo)} sentences already in {out} are skipped")
    return plan


def label_sentences(task: Task, config: LabelConfig, out: Path, handle: Any = None) -> LabelResult:
    """Label into ``out`` (resumed), after the privacy check on the input and the program's demos."""
    taxonomy = task.taxonomy
    job = _job(task, config)
    spec, program_path, program, items = job.spec, job.program_path, job.program, job.items
    attributes, content, program_label = job.attributes, job.content, job.program_label
    if handle is None:
        # The gate runs before any server starts or anything is sent, even when nothing is left to do.
        job.gate(task)
    result = LabelResult(out=out, program=program_path)
    # Before anything else: an --out that holds another input's sentences under these ids is refused.
    check_resume_matches(out, {i.id: i.text for i in items}, _input_name(task, config))
    if not {i.id for i in items} - done_ids(out):
        result.skipped, result.nothing_to_do = len(items), True
        return result
    if config.ray is not None and handle is None:
        from clinsynth.programs.steps.ray_label import label_with_ray

        label_with_ray(task, job, config, out, result)
        _write_parquet(config, out, taxonomy)
        return result
    if handle is None:
        handle = open_lm(
            spec, ROLE, task.privacy, [content], {program_label: program}, env_folders=[task.root],
            timeout=config.map.timeout, limits=config.map.limits,
        )  # fmt: skip
    else:
        admit(handle, program_label, program)
    result.lm = handle.name
    digest = program_sha256(program, taxonomy.guideline_text)

    def to_record(item: InputItem, attempt: Attempt) -> Record:
        record = make_record(item, attempt, handle, program, digest, config.seed, attributes.get(item.id, {}))
        result.label_counts.update(record.labels or ["NONE"])
        return record

    try:
        mapped = resumable_map(
            lambda item: program(sentence=item.text),
            items,
            key=lambda item: item.id,
            to_row=to_record,
            out=out,
            handle=handle,
            settings=config.map,
            desc="labelling",
            failure_info=lambda item: {"text": item.text},
        )
    finally:
        # Every run's real usage, also one that stopped (budget, endpoint): what it spent is spent.
        # A run the endpoint never answered leaves no log (nor any other empty file).
        result.usage = handle.usage()
        if result.usage and result.usage["calls"]:
            log_run(out, {"lm": handle.name, "program": program_label, "usage": result.usage})
    result.labelled, result.skipped, result.failed = mapped.done, mapped.skipped, mapped.failed
    result.failures_path = mapped.failures_path if mapped.failed else None
    _write_parquet(config, out, taxonomy)
    return result


def _write_parquet(config: LabelConfig, out: Path, taxonomy: Taxonomy) -> None:
    if config.parquet and out.exists():
        try:
            export_parquet(read_records(out, taxonomy), out.with_suffix(".parquet"))
        except ClinsynthError as exc:
            raise ClinsynthError(f"labelled records are safe in {out}, but the parquet export failed: {exc}") from exc

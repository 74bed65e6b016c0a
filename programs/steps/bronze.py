"""Bronze: write sentences per category with LabelToData, then filter them.

For each target (every category, NONE hard negatives, multi-label pairs) the step plans
calls of ``per_call`` sentences with sampled style constraints, until the target has its
quota of *kept* sentences or ``max_rounds`` rounds have sent new calls (a call already in the
calls file is reused and spends no round, so a rerun with fewer rounds, e.g. a top-up, keeps
every sentence an earlier run kept). Candidates pass, in order: a PHI
scan, exact and near-duplicate removal (MiniLM cosine), a leakage audit against every gold
sentence of the task (cosine >= ``leak_cosine`` or a shared ``leak_ngram``-gram), and a
round trip through the data-to-label program (``round_trip`` = drop | relabel | keep | off).

Only the guideline and generated sentences go to the LM; gold stays on this machine (it is
only embedded for the leakage audit). The round-trip labeller may carry gold demos, which
the session checks before any request (``clinsynth.llm.session.open_lm``).

Files next to ``out`` make the run resumable call by call and sentence by sentence:
``<out>.calls.jsonl`` (each generation call and its sentences), ``<out>.roundtrip.jsonl``
(round-trip labels) and ``<out>.failures.jsonl`` (calls and round trips that still fail,
retried with fresh samples on the next run). ``<out>`` (kept records),
``<out>.dropped.jsonl`` (each dropped sentence and why) and ``<out>.report.json`` (counts
per target and filter) are rewritten atomically at the end of every run from those files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinsynth.programs.data_to_label import MAX_TOKENS as LABELER_MAX_TOKENS
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.label_to_data import MAX_TOKENS as GENERATOR_MAX_TOKENS
from clinsynth.programs.label_to_data import (
    MULTI_TARGET,
    NONE_TARGET,
    SHORTHAND_SHARE,
    GenerationRequest,
    LabelToData,
    call_rollout,
    plan_call,
    request_inputs,
)
from clinsynth.programs.labellers import load_labeller

from clinsynth.data import bronze_filters as bf
from clinsynth.data.fileio import atomic_open, atomic_write_text, output_lock
from clinsynth.data.gold import SPLITS, split_path
from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import (
    Provenance,
    Record,
    iter_jsonl,
    now_iso,
    read_records,
    side_path,
    text_id,
    write_records,
)
from clinsynth.data.task import LMSpec, Task
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import BudgetExceeded, ClinsynthError
from clinsynth.fingerprint import program_sha256
from clinsynth.jobs.resumable import MapResult, MapSettings, read_failures, resumable_map, write_failures
from clinsynth.jobs.runner import Attempt
from clinsynth.llm.adapters import make_adapter
from clinsynth.llm.compiled import default_compiled, load_compiled
from clinsynth.llm.cost import (
    TYPICAL_SENTENCE_WORDS,
    CostPlan,
    PlanLine,
    answer_tokens,
    planned_endpoint,
    prompt_messages,
    shared_prefix_tokens,
    typical_sentence,
)
from clinsynth.llm.lm import LMHandle, default_adapter
from clinsynth.llm.meter import log_run
from clinsynth.llm.pricing import count_tokens
from clinsynth.llm.session import Content, admit, gate, has_demos, open_lm

PROGRAM_NAME = "clinsynth.programs.label_to_data.LabelToData"  # provenance.program of every bronze record
ROUND_TRIP_POLICIES = ("drop", "relabel", "keep", "off")
GENERATION_TEMPERATURE = 0.9  # diversity; the round trip and filters catch what drifts
ROLE = "generator"  # the task's LM role; the round trip uses the same LM
GENERATOR_CONTENT = Content("the guideline and generated sentences", Sensitivity.SYNTHETIC)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BronzeConfig:
    """What to generate and how to filter it; every default of the step (and its CLI) lives here."""

    per_category: int = 50  # kept sentences wanted per category
    negatives: int | None = None  # kept NONE hard negatives; None: as many as per_category
    multi_label: int | None = None  # kept two-category sentences; None: max(1, per_category // 5)
    per_call: int = 5  # sentences asked per LM call
    overgenerate: float = 2.0  # candidates planned per missing sentence
    max_rounds: int = 3  # rounds of new calls for targets short of their quota (reused calls spend none)
    round_trip: str = "drop"  # one of ROUND_TRIP_POLICIES
    near_duplicate: float = bf.NEAR_DUPLICATE_COSINE  # same label set, cosine at or above: dropped
    leak_cosine: float = bf.LEAK_COSINE  # cosine to a gold sentence at or above: dropped
    leak_ngram: int = bf.LEAK_NGRAM  # a shared n-gram of this length with gold: dropped
    seed: int = 0  # plans calls (target, style constraints) deterministically
    shorthand_share: float = SHORTHAND_SHARE  # chance a category's call asks for one of its shorthand forms
    categories: tuple[str, ...] | None = None  # a subset of the taxonomy's categories; None: all
    # Extra kept sentences for some categories on top of per_category (top-up mode: the
    # categories weakest on dev, ``weakest_categories``); earlier calls are reused.
    top_up: dict[str, int] = field(default_factory=dict)
    lm: LMSpec | None = None  # None: the task's generator LM (the round trip uses the same one)
    program: Path | None = None  # compiled LabelToData; None: the task's default compiled one, if any
    labeler: Path | None = None  # compiled DataToLabel for the round trip; None: the task's default, if any
    zero_shot: bool = False  # ignore compiled programs
    map: MapSettings = MapSettings()  # attempts, threads, fail-fast and progress of generation and round trip

    @classmethod
    def for_task(cls, task: Task, **overrides: Any) -> BronzeConfig:
        """The settings that make the task's bronze set: its ``[generate]`` table, then ``overrides``."""
        return cls(**{**task.bronze_settings, **overrides})

    def resolved(self) -> BronzeConfig:
        """This config with the derived quotas made concrete (as the report records them)."""
        return dataclasses.replace(
            self,
            negatives=self.per_category if self.negatives is None else self.negatives,
            multi_label=max(1, self.per_category // 5) if self.multi_label is None else self.multi_label,
        )

    def calls_for(self, missing: int) -> int:
        """Generation calls planned for ``missing`` sentences of a target: overgenerated, ``per_call`` a call."""
        return math.ceil(missing * self.overgenerate / self.per_call)

    def validate(self, taxonomy: Taxonomy) -> None:
        """Raise ClinsynthError on a bad value, before anything starts (unknown categories included)."""
        if self.round_trip not in ROUND_TRIP_POLICIES:
            raise ClinsynthError(f"round_trip must be one of {ROUND_TRIP_POLICIES}, got {self.round_trip!r}")
        positive = {"per_call": self.per_call, "max_rounds": self.max_rounds, "attempts": self.map.attempts}
        positive |= {"threads": self.map.threads, "max_consecutive_failures": self.map.max_consecutive_failures}
        for name, value in positive.items():
            if value < 1:
                raise ClinsynthError(f"{name} must be at least 1, got {value}")
        for name, count in (("per_category", self.per_category), ("negatives", self.negatives)):
            if count is not None and count < 0:
                raise ClinsynthError(f"{name} must not be negative, got {count}")
        if self.multi_label is not None and self.multi_label < 0:
            raise ClinsynthError(f"multi_label must not be negative, got {self.multi_label}")
        if self.overgenerate <= 0:
            raise ClinsynthError(f"overgenerate must be positive, got {self.overgenerate}")
        for name, cosine in (("near_duplicate", self.near_duplicate), ("leak_cosine", self.leak_cosine)):
            if not 0 < cosine <= 1:
                raise ClinsynthError(f"{name} must be a cosine in (0, 1], got {cosine}")
        if not 0 <= self.shorthand_share <= 1:
            raise ClinsynthError(f"shorthand_share must be in [0, 1], got {self.shorthand_share}")
        if self.leak_ngram < 1:
            raise ClinsynthError(f"leak_ngram must be at least 1, got {self.leak_ngram}")
        quotas(taxonomy, self)  # unknown categories
        unknown = [c for c in self.top_up if c not in taxonomy.names]
        if unknown or any(n < 0 for n in self.top_up.values()):
            raise ClinsynthError(f"top_up: unknown categories {unknown} or a negative count in {self.top_up}")

    def to_json(self) -> dict[str, Any]:
        """The config as the report records it: flat, as before (attempts, threads...), paths as strings."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("map", "lm")}
        out = {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}
        out.update(
            attempts=self.map.attempts,
            threads=self.map.threads,
            max_consecutive_failures=self.map.max_consecutive_failures,
        )
        if self.lm is not None:
            out["lm"] = dataclasses.asdict(self.lm)
        return out


@dataclass
class BronzeResult:
    kept: list[Record]
    dropped: list[bf.Dropped]
    counts: dict[str, Counter]  # target -> generated, one count per filter, relabelled, kept
    leakage_pairs: list[dict[str, Any]]  # the candidates nearest to gold, for the report
    usage: dict[str, Any] | None = None  # this run's real calls, tokens and cost (clinsynth.llm.meter)
    failed_calls: int = 0  # generation calls of this run still failing after their attempts
    failed_round_trips: int = 0  # round trips of this run still failing (those sentences are dropped)
    rounds: int = 0
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    lm: str = ""
    generator_program: str = "zero-shot"  # compiled file used, or zero-shot
    labeler_program: str | None = None  # None: no round trip
    # Files written (None until written, or when absent: no failures left).
    out: Path | None = None
    dropped_path: Path | None = None
    report_path: Path | None = None
    calls_path: Path | None = None
    roundtrip_path: Path | None = None
    failures_path: Path | None = None

    def kept_per_target(self) -> Counter:
        return Counter({t: c["kept"] for t, c in self.counts.items()})

    @property
    def table(self) -> tuple[list[str], list[list[Any]]]:
        """Header and rows of the counts table (one row per target), for ``clinsynth.report.format_table``."""
        columns = ["generated", *bf.FILTERS, "relabelled", bf.OVER_QUOTA, "kept"]
        targets = sorted(self.counts, key=lambda t: (t in (NONE_TARGET, MULTI_TARGET), t))
        rows = [[t, *(self.counts[t].get(c, 0) for c in columns)] for t in targets]
        return ["target", *columns], rows


def quotas(taxonomy: Taxonomy, cfg: BronzeConfig) -> dict[str, int]:
    """Kept sentences wanted per target; unknown ``cfg.categories`` are a ClinsynthError."""
    names = cfg.categories or taxonomy.names
    unknown = [n for n in names if n not in taxonomy.names]
    if unknown:
        raise ClinsynthError(f"unknown categories {unknown}; the taxonomy has {', '.join(taxonomy.names)}")
    cfg = cfg.resolved()
    out = {n: cfg.per_category + cfg.top_up.get(n, 0) for n in names}
    if cfg.negatives:
        out[NONE_TARGET] = cfg.negatives
    if cfg.multi_label:
        out[MULTI_TARGET] = cfg.multi_label
    return out


def weakest_categories(task: Task, k: int) -> tuple[list[tuple[str, float]], str]:
    """The ``k`` categories with the lowest F1 on data that is not gold test, and where that F1 came from.

    Preferred: the out-of-fold F1 of the mix the task's cross-validated report chose (gold train +
    dev, every sentence scored once per seed); else the default model's per-category F1 on gold dev.
    Gold test never chooses.
    """
    from clinsynth.data.mixes import best_mix

    report = task.reports_dir / "augmentation.json"
    model_info = task.model_dir / "clinsynth.json"
    if report.exists() and (summary := json.loads(report.read_text(encoding="utf-8"))).get("folds"):
        mix = best_mix(summary) or "gold"
        row = next(r for r in summary["systems"] if r["system"] == mix)
        f1 = {c: row["per_category"][c][0] for c in task.taxonomy.names}
        source = f"out-of-fold F1 of {mix} in {task.relative(report)}"
    elif model_info.exists():
        per_category = json.loads(model_info.read_text(encoding="utf-8"))["dev_scores"]["per_category"]
        f1 = {c: per_category[c]["f1"] or 0.0 for c in task.taxonomy.names}
        source = f"gold dev F1 of the default model ({task.relative(model_info)})"
    else:
        raise ClinsynthError(
            "top-up needs per-category scores: run the experiment (python -m evals.run augmentation) or train the "
            "default model (clinsynth train) first"
        )
    return sorted(f1.items(), key=lambda kv: kv[1])[:k], source


def gold_texts(gold_dir: Path) -> list[str]:
    """Every gold sentence of a task (all splits present): the leakage audit's reference."""
    paths = [split_path(split, gold_dir) for split in SPLITS]
    return [r.text for p in paths if p.exists() for r in read_records(p)]


def generate_bronze(
    task: Task,
    config: BronzeConfig = BronzeConfig(),
    out: Path | None = None,
    handle: LMHandle | None = None,
    generator: LabelToData | None = None,
    labeler: DataToLabel | None = None,
    embed: bf.Embed | None = None,
) -> BronzeResult:
    """Generate, filter and write bronze records for ``task``; resumes from the files next to ``out``.

    ``out`` defaults to ``task.bronze``. Tests inject ``handle`` (an LM already open),
    ``generator`` / ``labeler`` (programs; default: the task's compiled ones for the
    generator LM unless ``config.zero_shot``) and ``embed`` (default: MiniLM). Raises
    ClinsynthError for a bad config (before anything starts), PrivacyError when the
    labeller's demos may not go to the generator endpoint (before any LM starts), and
    ``clinsynth.jobs.resumable.EndpointError`` when the endpoint stops answering (what was
    written is kept; rerun to resume).
    """
    taxonomy = task.taxonomy
    cfg, out, spec = _settings(task, config, out)
    generator, generator_path, labeler, labeler_path = _load_programs(task, cfg, spec, generator, labeler)
    gold = gold_texts(task.gold_dir)
    if not gold:
        log.warning("no gold sentences in %s: the leakage audit has nothing to compare with", task.gold_dir)
    programs = _declared(task, generator, generator_path, labeler, labeler_path)
    if handle is None:
        # The privacy check before anything is created on disk or any server starts.
        gate(spec, ROLE, task.privacy, [GENERATOR_CONTENT], programs, env_folders=[task.root])
    # One run per output at a time: two runs would interleave rounds and the shared failures file.
    with output_lock(out):  # creates out's parent folders
        if handle is None:
            handle = open_lm(
                spec, ROLE, task.privacy, [GENERATOR_CONTENT], programs, env_folders=[task.root],
                timeout=cfg.map.timeout, limits=cfg.map.limits,
            )  # fmt: skip
        else:
            for name, program in programs.items():  # an injected LM gets the same check for the programs
                if program is not None:
                    admit(handle, name, program)
        if embed is None:
            from clinsynth.model.embeddings import encode as embed
        run = _BronzeRun(taxonomy, generator, labeler, handle, out, cfg, gold, embed, task.rules)
        try:
            result = run.run()
        except BudgetExceeded:
            # The calls and round trips written so far stay; the outputs are rebuilt on the rerun.
            usage = handle.usage()
            if usage and usage["calls"]:
                log_run(out, {"lm": handle.name, "usage": usage})
            raise
        result.lm = handle.name
        result.usage = handle.usage()
        if result.usage and result.usage["calls"]:
            log_run(out, {"lm": handle.name, "usage": result.usage})
        result.generator_program = task.relative(generator_path) if generator_path else _describe(generator)
        if labeler is not None:
            result.labeler_program = task.relative(labeler_path) if labeler_path else _describe(labeler)
        _write_outputs(result, out, cfg, task)
    return result


def _settings(task: Task, config: BronzeConfig, out: Path | None) -> tuple[BronzeConfig, Path, LMSpec]:
    """The checked, resolved config, the output file and the generator LM a run (or its plan) uses."""
    config.validate(task.taxonomy)
    cfg = config.resolved()
    return cfg, Path(out if out is not None else task.bronze), cfg.lm or task.lm(ROLE)


def _load_programs(
    task: Task, cfg: BronzeConfig, spec: LMSpec, generator: LabelToData | None, labeler: DataToLabel | None
) -> tuple[LabelToData, Path | None, DataToLabel | None, Path | None]:
    """The generator and round-trip labeller (given, else the task's compiled ones for the LM) and their files."""
    taxonomy = task.taxonomy
    generator_path: Path | None = None
    if generator is None:
        generator = LabelToData(taxonomy, n=cfg.per_call)
        generator_path = None if cfg.zero_shot else cfg.program or default_compiled(task, "label_to_data", spec)
        if generator_path is not None:
            load_compiled(generator, generator_path, taxonomy)
    labeler_path: Path | None = None
    if cfg.round_trip == "off":
        labeler = None
    elif labeler is None:
        labeler_path = None if cfg.zero_shot else cfg.labeler or default_compiled(task, "data_to_label", spec)
        labeler = load_labeller(taxonomy, labeler_path)
    return generator, generator_path, labeler, labeler_path


def _declared(
    task: Task, generator: Any, generator_path: Path | None, labeler: Any, labeler_path: Path | None
) -> dict[str, Any]:
    """The programs as the privacy check names them."""
    return {
        _program_name("generator", generator_path, task): generator,
        _program_name("round-trip labeller", labeler_path, task): labeler,
    }


def plan_bronze(task: Task, config: BronzeConfig = BronzeConfig(), out: Path | None = None) -> CostPlan:
    """The cost plan of ``generate_bronze`` (``--dry-run``): nothing is opened, started or sent.

    Round 1 is planned exactly as the run plans it (the same calls, skipping those already
    in ``<out>.calls.jsonl``), each prompt counted as the adapter formats it. The round
    trip is counted as one labeller call per generated sentence (its upper bound: the
    filters before it drop some). Top-up rounds depend on what the filters keep; each
    plans at most round 1's calls, which gives the upper bound.
    """
    taxonomy = task.taxonomy
    cfg, out, spec = _settings(task, config, out)
    generator, generator_path, labeler, labeler_path = _load_programs(task, cfg, spec, None, None)
    programs = _declared(task, generator, generator_path, labeler, labeler_path)
    endpoint, refused = planned_endpoint(
        spec, lambda: gate(spec, ROLE, task.privacy, [GENERATOR_CONTENT], programs, env_folders=[task.root])
    )
    model = spec.model
    adapter = make_adapter(default_adapter(model))
    calls_path = side_path(out, "calls.jsonl")
    done = {obj["id"] for _, obj in iter_jsonl(calls_path)} if calls_path.exists() else set()
    requests = [
        plan_call(taxonomy, target, index, cfg.seed, cfg.shorthand_share)
        for target, quota in quotas(taxonomy, cfg).items()
        for index in range(cfg.calls_for(quota))
    ]
    todo = [r for r in requests if r.call_id not in done]
    predictor = generator.generate
    prompts = [prompt_messages(predictor, adapter, request_inputs(taxonomy, r, generator.n)) for r in todo]
    prompt = sum(count_tokens(model, messages) for messages in prompts)
    answer = answer_tokens(model, predictor, adapter, {"sentences": [typical_sentence()] * cfg.per_call})
    gen_max = int(predictor.config.get("max_tokens") or GENERATOR_MAX_TOKENS)
    plan = CostPlan("generate", model, endpoint, refused=refused, max_cost=cfg.map.limits.max_cost)
    plan.lines.append(PlanLine("generation calls, round 1", len(todo), prompt, answer * len(todo), gen_max * len(todo),
                               shared_prefix_tokens(model, prompts[:2])))  # fmt: skip
    if labeler is not None:
        n = len(todo) * cfg.per_call
        rt_prompt = count_tokens(model, prompt_messages(labeler.label, adapter, {"sentence": typical_sentence()}))
        # What every round-trip prompt shares: the prompt up to where two different sentences part.
        rt_prompts = [prompt_messages(labeler.label, adapter, {"sentence": text}) for text in ("x", "y")]
        rt_answer = answer_tokens(model, labeler.label, adapter, labeler.typical_answer())
        rt_max = int(labeler.label.config.get("max_tokens") or LABELER_MAX_TOKENS)
        plan.lines.append(PlanLine("round trip (at most)", n, rt_prompt * n, rt_answer * n, rt_max * n,
                                   shared_prefix_tokens(model, rt_prompts)))  # fmt: skip
    first = plan.cost
    if first is not None and cfg.max_rounds > 1:
        plan.upper_bound = first * cfg.max_rounds
    plan.assumptions += [
        f"generator: {task.relative(generator_path) if generator_path else 'zero-shot'}; round trip: "
        + (str(task.relative(labeler_path)) if labeler_path else "zero-shot" if labeler is not None else "off"),
        f"completion: {answer} tokens a generation call ({cfg.per_call} sentences of "
        f"{TYPICAL_SENTENCE_WORDS} words), {plan.lines[-1].completion_tokens // max(1, plan.lines[-1].calls)} "
        "a round-trip answer",
        f"round trip: one call per generated sentence ({cfg.per_call} a call), before the filters drop any",
        f"top-up rounds (up to {cfg.max_rounds - 1}) not in the total: each plans at most round 1's calls",
        "no retries and no DSPy cache hits",
    ]
    if done:
        plan.assumptions.append(f"{len(requests) - len(todo)} round-1 calls already in {calls_path} are skipped")
    return plan


def _program_name(role: str, path: Path | None, task: Task) -> str:
    """A program as the privacy check names it: its role, and its file when compiled."""
    return f"{role} ({task.relative(path)})" if path is not None else role


def _describe(program: Any) -> str:
    """How an injected program is named in the report: whether it carries demos."""
    return "given (with demos)" if has_demos(program) else "zero-shot"


class _BronzeRun:
    """Runs generation rounds and the filters over everything generated so far."""

    def __init__(
        self,
        taxonomy: Taxonomy,
        generator: LabelToData,
        labeler: DataToLabel | None,
        handle: LMHandle,
        out: Path,
        cfg: BronzeConfig,
        gold: list[str],
        embed: bf.Embed,
        rules: Any = None,  # the task's RuleSet: the subject filter
    ) -> None:
        self.taxonomy = taxonomy
        self.rules = rules
        self.generator = generator
        self.labeler = labeler
        self.handle = handle
        self.out = out
        self.cfg = cfg
        self.gold = gold
        self.embed = embed
        self.settings = cfg.map
        self.generator_sha = program_sha256(generator, taxonomy.guideline_text)
        self.labeler_sha = program_sha256(labeler, taxonomy.guideline_text) if labeler is not None else None
        # The generator samples at its own temperature; the round trip keeps the handle's (0).
        self.gen_handle = dataclasses.replace(handle, lm=handle.lm.copy(temperature=GENERATION_TEMPERATURE))
        self.calls_path = side_path(out, "calls.jsonl")
        self.roundtrip_path = side_path(out, "roundtrip.jsonl")
        self.failures_path = side_path(out, "failures.jsonl")
        # Sentences --drop-label-issues took out of the set: a rebuild must not bring them back.
        self.label_issues = earlier_drops(side_path(out, "dropped.jsonl"), bf.LABEL_ISSUE)
        self.sent_calls: set[str] = set()  # ids this run gave each map: what its failures file may keep
        self.sent_sentences: set[str] = set()

    def _map(self, map_out: Path, handle: LMHandle, **kwargs: Any) -> MapResult:
        """``resumable_map`` writing ``map_out``, its failures in the step's shared failures file."""
        # One failures file for generation and round trip: call ids and sentence ids never collide.
        return resumable_map(
            out=map_out, handle=handle, settings=self.settings, failures=self.failures_path, **kwargs
        )

    # -- generation
    def _generate(self, requests: list[GenerationRequest]) -> None:
        """Run the calls not yet in the calls file."""

        def row(request: GenerationRequest, attempt: Attempt) -> dict[str, Any]:
            return {
                "id": request.call_id,
                **request.to_dict(),
                "sentences": list(attempt.value.sentences),
                "attempts": attempt.attempts,
                "rollout": attempt.rollout,  # with the temperature: the sample this answer is
                "temperature": attempt.temperature,
                "lm": self.handle.name,
                "endpoint": self.handle.endpoint_id,
                "program_sha256": self.generator_sha,
                "seed": self.cfg.seed,
                "created_at": now_iso(),
            }

        self.sent_calls.update(r.call_id for r in requests)
        self._map(
            self.calls_path,
            fn=self.generator.run_request,
            items=requests,
            key=lambda r: r.call_id,
            to_row=row,
            handle=self.gen_handle,
            desc="generating",
            # Each planned call is its own sample: calls with the same prompt must not share a cached answer.
            first_rollout=lambda r: call_rollout(r.call_id),
            failure_info=lambda r: {"step": "generation", "call_id": r.call_id, "target": r.target},
        )

    def _calls(self) -> dict[str, dict[str, Any]]:
        if not self.calls_path.exists():
            return {}
        return {obj["id"]: obj for _, obj in iter_jsonl(self.calls_path)}

    # -- round trip
    def _round_trip(self, candidates: list[bf.Candidate]) -> dict[str, dict[str, Any]]:
        labeler = self.labeler
        assert labeler is not None

        def row(candidate: bf.Candidate, attempt: Attempt) -> dict[str, Any]:
            conf = attempt.value.confidence
            return {
                "id": candidate.id,
                "labels": list(attempt.value.categories),
                "confidence": None if conf is None else round(float(conf), 4),
                "rollout": attempt.rollout,
                "temperature": attempt.temperature,
            }

        self.sent_sentences.update(c.id for c in candidates)
        self._map(
            self.roundtrip_path,
            fn=lambda c: labeler(sentence=c.text),
            items=candidates,
            key=lambda c: c.id,
            to_row=row,
            handle=self.handle,
            desc="round trip",
            failure_info=lambda c: {"step": "round trip", "call_id": c.call_id, "text": c.text},
        )
        if not self.roundtrip_path.exists():
            return {}
        return {obj["id"]: obj for _, obj in iter_jsonl(self.roundtrip_path)}

    # -- filters
    def filter(self, calls: dict[str, dict[str, Any]], order: list[str]) -> BronzeResult:
        cfg = self.cfg
        candidates = []
        for call_id in order:
            call = calls.get(call_id)
            if call is None:
                continue
            for text in call["sentences"]:
                candidates.append(
                    bf.Candidate(
                        id=f"bronze-{text_id(text)[2:]}",
                        text=text,
                        target=call["target"],
                        labels=tuple(call["labels"]),
                        call_id=call_id,
                    )
                )
        counts: dict[str, Counter] = defaultdict(Counter)
        for c in candidates:
            counts[c.target]["generated"] += 1
        dropped: list[bf.Dropped] = []

        def apply(result: tuple[list[bf.Candidate], list[bf.Dropped]]) -> list[bf.Candidate]:
            kept, gone = result
            for d in gone:
                counts[d.candidate.target][d.filter] += 1
            dropped.extend(gone)
            return kept

        survivors = apply(bf.phi_filter(candidates))
        survivors = apply(bf.exact_dedup(survivors))
        survivors = apply(bf.echo_filter(survivors, self._request_texts(calls, order)))
        audit = bf.audit_leakage(survivors, self.gold, self.embed, cfg.leak_cosine, cfg.leak_ngram)
        survivors = apply(bf.leakage_filter(survivors, audit))
        survivors = apply(bf.near_dedup(survivors, self.embed, cfg.near_duplicate))
        if self.rules is not None:
            survivors = apply(bf.subject_filter(survivors, self.rules))
        survivors = apply(bf.standing_drops(survivors, self.label_issues, bf.LABEL_ISSUE))
        if cfg.round_trip != "off" and self.labeler is not None:
            answers = self._round_trip(survivors)
            kept_rt, gone = [], []
            for c in survivors:
                answer = answers.get(c.id)
                if answer is None:
                    gone.append(bf.Dropped(c, bf.ROUND_TRIP_FAILED, "the labeller failed after retries"))
                    continue
                agrees = bf.round_trip_agrees(c.labels, answer["labels"])
                c.info.update(
                    roundtrip_labels=answer["labels"],
                    roundtrip_confidence=answer["confidence"],
                    roundtrip_agrees=agrees,
                )
                if cfg.round_trip == "drop" and not agrees:
                    shown = ", ".join(answer["labels"]) or NONE_LABEL
                    gone.append(bf.Dropped(c, bf.ROUND_TRIP, f"labeller said {shown}"))
                    continue
                if cfg.round_trip == "relabel" and not agrees:
                    c.info["generated_labels"] = list(c.labels)
                    c.labels = tuple(answer["labels"])
                    counts[c.target]["relabelled"] += 1
                kept_rt.append(c)
            survivors = apply((kept_rt, gone))
        kept_records, over = self._within_quota(survivors, calls)
        apply(([], over))
        for r in kept_records:
            assert r.provenance is not None and r.provenance.attributes is not None
            counts[r.provenance.attributes["target"]]["kept"] += 1
        pairs = sorted(
            (
                {"bronze": c.text, "gold": audit.nearest[c.id][1], "cosine": round(audit.nearest[c.id][0], 4)}
                for c in candidates
                if c.id in audit.nearest
            ),
            key=lambda p: -p["cosine"],
        )[:10]
        return BronzeResult(kept_records, dropped, counts, pairs)

    def _request_texts(self, calls: dict[str, dict[str, Any]], order: list[str]) -> dict[str, str]:
        """Call id -> the target and constraints text the call sent, rebuilt from its plan."""
        out = {}
        for call_id in order:
            call = calls.get(call_id)
            if call is not None:
                request = GenerationRequest(call_id, call["target"], tuple(call["labels"]), call["attributes"])
                inputs = request_inputs(self.taxonomy, request, self.cfg.per_call)
                out[call_id] = f"{inputs['target']}\n{inputs['constraints']}"
        return out

    def _within_quota(
        self, survivors: list[bf.Candidate], calls: dict[str, dict[str, Any]]
    ) -> tuple[list[Record], list[bf.Dropped]]:
        want = quotas(self.taxonomy, self.cfg)
        taken: Counter = Counter()
        records, over = [], []
        for c in survivors:
            if taken[c.target] >= want.get(c.target, 0):
                over.append(bf.Dropped(c, bf.OVER_QUOTA, "target already has its quota"))
                continue
            taken[c.target] += 1
            records.append(self._record(c, calls[c.call_id]))
        return records, over

    def _record(self, c: bf.Candidate, call: dict[str, Any]) -> Record:
        attributes = {
            "target": c.target,
            "call_id": c.call_id,
            "generated_labels": c.info.get("generated_labels", list(c.labels)),
            **call["attributes"],
            "generation_attempts": call.get("attempts"),
            **({"endpoint": call["endpoint"]} if call.get("endpoint") else {}),
            **{k: v for k, v in c.info.items() if k != "generated_labels"},
        }
        if self.labeler_sha and "roundtrip_labels" in c.info:
            attributes["roundtrip_program_sha256"] = self.labeler_sha
        return Record(
            id=c.id,
            text=c.text,
            labels=list(c.labels),
            source="bronze",
            provenance=Provenance(
                lm=call["lm"],
                program=PROGRAM_NAME,
                program_sha256=call["program_sha256"],
                seed=call["seed"],
                created_at=call["created_at"],
                confidence=c.info.get("roundtrip_confidence"),
                attributes=attributes,
            ),
        )

    def _settle_failures(self) -> tuple[int, int]:
        """Keep only failures of calls and sentences this run still wanted; count them (calls, round trips).

        The maps keep failure rows of ids they were not given (and how many attempts were
        spent on them). A call an earlier run planned but this one did not need, or a
        sentence no longer a candidate, is not a failure of this data any more: as before,
        the file holds what this run tried and could not do, and is gone when that is nothing.
        """
        rows = read_failures(self.failures_path)
        keep = {k: v for k, v in rows.items() if k in self.sent_calls or k in self.sent_sentences}
        if keep != rows:
            write_failures(self.failures_path, keep)
        calls = sum(k in self.sent_calls for k in keep)
        return calls, len(keep) - calls

    # -- the whole run
    def run(self) -> BronzeResult:
        started = time.monotonic()
        want = quotas(self.taxonomy, self.cfg)
        planned: dict[str, int] = dict.fromkeys(want, 0)
        order: list[str] = []
        result: BronzeResult | None = None
        round_no = rounds_with_new_calls = 0
        calls = self._calls()
        # Calls already in the calls file replay the earlier run's rounds without spending this
        # run's: a rerun with fewer rounds than the run that wrote the set must not drop the
        # sentences of its later rounds (it would, silently, were every round counted).
        while rounds_with_new_calls < self.cfg.max_rounds:
            have = Counter() if result is None else result.kept_per_target()
            requests = []
            for target, quota in want.items():
                missing = quota - have[target]
                if missing <= 0:
                    continue
                n_calls = self.cfg.calls_for(missing)
                for index in range(planned[target], planned[target] + n_calls):
                    request = plan_call(self.taxonomy, target, index, self.cfg.seed, self.cfg.shorthand_share)
                    requests.append(request)
                    order.append(request.call_id)
                planned[target] += n_calls
            if not requests:
                break
            round_no += 1
            rounds_with_new_calls += any(r.call_id not in calls for r in requests)
            # Interleave targets so an interrupted run has a bit of every target.
            requests.sort(key=lambda r: int(r.call_id.rsplit(":", 1)[1]))
            self._generate(requests)
            calls = self._calls()
            result = self.filter(calls, order)
            result.rounds = round_no
        if result is None:  # every quota is zero: nothing to generate
            result = self.filter({}, [])
        result.failed_calls, result.failed_round_trips = self._settle_failures()
        result.seconds = time.monotonic() - started
        return result


def refilter_subject(task: Task, out: Path) -> list[dict[str, Any]]:
    """Apply the subject filter to a bronze set made before it existed: offending sentences leave
    ``out`` for ``<out>.dropped.jsonl`` (filter ``subject``) and the report's counts; returns them."""
    if task.rules is None:
        raise ClinsynthError(f"task {task.name} has no rule list (rules.yaml): the subject filter needs one")
    records = read_records(out)
    gone: dict[int, str] = {}
    for i, record in enumerate(records):
        broken = bf.subject_violations(record.text, record.labels, task.rules)
        if broken:
            gone[i] = bf.subject_detail(broken)
    return _leave_set(out, records, gone, bf.SUBJECT)


def drop_label_issues(out: Path, names: Sequence[str]) -> list[dict[str, Any]]:
    """Drop the sentences whose label the rest of the set contradicts (confident learning,
    ``clinsynth.model.label_issues``): they leave ``out`` for ``<out>.dropped.jsonl`` (filter
    ``label_issue``, with cleanlab's label quality) and the report's counts; returns them.
    Embeds the set and fits small models on it; no LM call, no gold sentence read."""
    from clinsynth.model.embeddings import encode
    from clinsynth.model.label_issues import find_label_issues

    records = read_records(out)
    issues = find_label_issues(encode([r.text for r in records]), [r.labels for r in records], names)
    gone = {issue.index: f"label quality {issue.quality:.3f}" for issue in issues}
    return _leave_set(out, records, gone, bf.LABEL_ISSUE)


def earlier_drops(dropped_path: Path, filter_name: str) -> dict[str, str]:
    """Id -> detail of the rows of ``dropped_path`` under ``filter_name`` (none if no file)."""
    if not dropped_path.exists():
        return {}
    rows = (row for _, row in iter_jsonl(dropped_path))
    return {row["id"]: row.get("detail", "") for row in rows if row.get("filter") == filter_name}


def _leave_set(out: Path, records: list[Record], gone: dict[int, str], filter_name: str) -> list[dict[str, Any]]:
    """Move ``records[i]`` for each ``i`` in ``gone`` (index -> why) from ``out`` to
    ``<out>.dropped.jsonl`` under ``filter_name``, and out of the report's kept counts."""
    rows = []
    for i, detail in sorted(gone.items()):
        record = records[i]
        target = (record.provenance.attributes or {}).get("target", "") if record.provenance else ""
        rows.append({"id": record.id, "text": record.text, "target": target, "labels": list(record.labels),
                     "filter": filter_name, "detail": detail})  # fmt: skip
    if not rows:
        return []
    kept = [r for i, r in enumerate(records) if i not in gone]
    dropped_path = side_path(out, "dropped.jsonl")
    old = dropped_path.read_text(encoding="utf-8") if dropped_path.exists() else ""
    atomic_write_text(dropped_path, old + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    report_path = side_path(out, "report.json")
    if report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        for row in rows:
            counts = report.setdefault("counts", {}).setdefault(row["target"], {})
            counts[filter_name] = counts.get(filter_name, 0) + 1
            counts["kept"] = counts.get("kept", 0) - 1
        filters = list(report.get("filters") or list(bf.FILTERS) + [bf.OVER_QUOTA])
        report["filters"] = filters + [filter_name] * (filter_name not in filters)
        report["kept_by_label"] = dict(Counter(label for r in kept for label in (r.labels or [NONE_LABEL])))
        atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_records(out, kept)  # last: the dropped rows are on disk before they leave the set
    return rows


def _write_outputs(result: BronzeResult, out: Path, cfg: BronzeConfig, task: Task) -> None:
    """``out``, ``<out>.dropped.jsonl`` and ``<out>.report.json``, each replaced atomically.

    A run with no sentence kept or dropped (every call failed, or nothing was asked for)
    writes neither ``out`` nor the dropped file: an empty ``out`` would read as a finished,
    empty bronze set, and the next step would train on it. The report (failed calls) and
    the failures file still say what happened; a rerun resumes from the side files.
    """
    dropped_path = side_path(out, "dropped.jsonl")
    if result.kept or result.dropped:
        write_records(out, result.kept)
        with atomic_open(dropped_path) as fh:
            for d in result.dropped:
                row = {
                    "id": d.candidate.id,
                    "text": d.candidate.text,
                    "target": d.candidate.target,
                    "labels": list(d.candidate.labels),  # what the sentence was written for
                    "filter": d.filter,
                    "detail": d.detail,
                }
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        result.out, result.dropped_path = out, dropped_path
    else:
        # Empty files left by an earlier run of this kind go too; a file with content is an
        # earlier run's result and stays as it was (this run has nothing to replace it with).
        for path in (out, dropped_path):
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
    result.config = cfg.to_json()
    filters = [*bf.FILTERS, bf.OVER_QUOTA]
    if any(bf.LABEL_ISSUE in c for c in result.counts.values()):
        filters.append(bf.LABEL_ISSUE)  # the set carries drops made on demand (--drop-label-issues)
    report = {
        "out": task.relative(out),
        "task": task.name,
        "lm": result.lm,
        "generator_program": result.generator_program,
        "labeler_program": result.labeler_program,
        "created_at": now_iso(),
        "config": result.config,
        "rounds": result.rounds,
        "failed_calls": result.failed_calls,
        "failed_round_trips": result.failed_round_trips,
        "seconds": round(result.seconds, 1),
        "usage": result.usage,
        "filters": filters,
        "counts": {t: dict(c) for t, c in result.counts.items()},
        "kept_by_label": dict(Counter(label for r in result.kept for label in (r.labels or [NONE_LABEL]))),
        "nearest_gold_pairs": result.leakage_pairs,
        "taxonomy": task.taxonomy.name,
    }
    report_path = side_path(out, "report.json")
    atomic_write_text(report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    failures = side_path(out, "failures.jsonl")
    result.report_path = report_path
    result.calls_path = side_path(out, "calls.jsonl")
    result.roundtrip_path = side_path(out, "roundtrip.jsonl") if cfg.round_trip != "off" else None
    result.failures_path = failures if failures.exists() else None

"""The compile step: tune a program's prompt with an optimizer, score it before and after, save it.

One path for both programs. Each has a *job* that knows its data, what its prompts carry
(for the privacy session), how to score it and what to record; the optimizers come from
the registry in ``programs.optimizers``.

- ``data-to-label`` (the labeller): demos come from gold train, scores are on gold dev.
  Gold goes into the prompts, so it is declared private.
- ``label-to-data`` (the generator): planned generation calls, scored per gold dev
  category by round-trip agreement, diversity and realism (``programs.compile_generator``).
  Only the guideline and generated text reach the LM (gold dev is embedded on this
  machine), but the round-trip labeller runs on the same LM: it is declared, so a
  compiled labeller with gold demos is refused on an unapproved remote endpoint.

The LM is the task's ``prompt_model`` role unless ``config.lm`` says otherwise; it is
opened through ``clinsynth.llm.session.open_lm`` after the privacy check. The compiled
program records its endpoint and where its demos came from (``demos_from``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from clinsynth.programs.optimizers import Optimizer, Problem, get_optimizer, search_candidates

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import now_iso, read_records
from clinsynth.data.task import LMSpec, Task
from clinsynth.errors import BudgetExceeded, ClinsynthError
from clinsynth.llm.adapters import make_adapter
from clinsynth.llm.compiled import (
    compiled_path,
    default_compiled,
    endpoint_record,
    project_relative,
    save_compiled,
    taxonomy_sha256,
)
from clinsynth.llm.cost import (
    TYPICAL_SENTENCE_WORDS,
    CostPlan,
    PlanLine,
    answer_tokens,
    planned_endpoint,
    prompt_messages,
    typical_sentence,
)
from clinsynth.llm.lm import REQUEST_TIMEOUT, LMHandle, default_adapter
from clinsynth.llm.meter import Limits
from clinsynth.llm.pricing import count_tokens
from clinsynth.llm.session import NO_DEMOS, Content, DemoSource, admit, gate, has_demos, open_lm
from clinsynth.report import format_table

ROLE = "prompt_model"
PROGRAMS = {"data-to-label": "data_to_label", "label-to-data": "label_to_data"}  # CLI name -> file stem
DEFAULT_K = {"data-to-label": 18, "label-to-data": 2}


@dataclass(frozen=True)
class CompileConfig:
    program: str = "data-to-label"  # "data-to-label" | "label-to-data"
    optimizer: str = "labeled-fewshot"  # a name in programs.optimizers.OPTIMIZERS
    k: int | None = None  # demos per prompt; None = 18 (data-to-label) or 2 (label-to-data)
    trials: int = 6  # search budget for random-search / mipro / gepa
    seed: int = 0
    threads: int = 1  # parallel requests (1 for the embedded LM)
    dev_limit: int | None = None  # data-to-label: score on the first N dev sentences only
    per_target: int = 1  # label-to-data: dev calls per target (train: twice as many)
    skip_before: bool = False  # do not score the uncompiled program
    out: Path | None = None  # None = <task compiled dir>/<program>.<lm>[@host_port].json
    labeler: Path | None = None  # label-to-data: DataToLabel for the round trip; None = the task's compiled one
    train: Path | None = None  # data-to-label demos; None = the task's gold train
    dev: Path | None = None  # None = the task's gold dev
    timeout: float = REQUEST_TIMEOUT  # seconds per LM request
    limits: Limits = Limits()  # --max-cost, --rpm, --tpm


@dataclass
class CompileResult:
    out: Path
    program: str
    optimizer: str
    lm: str
    before: dict[str, Any] | None
    after: dict[str, Any]
    metadata: dict[str, Any]  # as saved (the "clinsynth" block and the taxonomy sha256)
    headers: list[str]
    rows: list[list[Any]]
    compiled: Any = field(default=None, repr=False)  # the compiled dspy.Module
    usage: dict[str, Any] | None = None  # this run's real calls, tokens and cost (clinsynth.llm.meter)

    def table(self) -> str:
        return format_table(self.headers, self.rows)


@dataclass
class _CallCosts:
    """Tokens of one evaluation of a program, per part of it.

    A part: (name, calls per evaluation, prompt tokens zero-shot, prompt tokens with demos,
    answer tokens, max_tokens).
    """

    parts: list[tuple[str, int, float, float, int, int]]
    assumptions: list[str]

    def lines(self, what: str, evaluations: int, demos: bool) -> list[PlanLine]:
        out = []
        for part, each, zero, with_demos, answer, max_tokens in self.parts:
            calls = evaluations * each
            prompt = with_demos if demos else zero
            out.append(PlanLine(f"{what}: {part}", calls, round(prompt * calls), answer * calls, max_tokens * calls))
        return out


class _Job(Protocol):
    """One program's side of compiling (see the module docstring)."""

    headers: list[str]

    def content(self) -> list[Content]: ...
    def programs(self) -> dict[str, Any]: ...
    def student(self) -> Any: ...
    def problem(self, student: Any, handle: LMHandle) -> Problem: ...
    def score(self, program: Any, handle: LMHandle, desc: str) -> dict[str, Any]: ...
    def demos_from(self, compiled: Any, optimizer: Optimizer) -> DemoSource: ...
    def metadata(self, compiled: Any, optimizer: Optimizer) -> dict[str, Any]: ...
    def call_costs(self, model: str, adapter: Any, k: int) -> _CallCosts: ...
    def rows(self, before: dict[str, Any] | None, after: dict[str, Any]) -> list[list[Any]]: ...


class _LabellerJob:
    headers = ["dev", "mean set F1", "micro F1", "macro F1", "binary F1", "failed", "s/sentence"]

    def __init__(self, task: Task, config: CompileConfig, k: int) -> None:
        from clinsynth.programs.compile_labeler import to_examples

        self.task, self.config, self.k = task, config, k
        self.taxonomy = task.taxonomy
        self.train_path = config.train or task.split_path("train")
        self.dev_path = config.dev or task.split_path("dev")
        self.train = to_examples(read_records(self.train_path, self.taxonomy))
        self.dev = to_examples(read_records(self.dev_path, self.taxonomy))[: config.dev_limit]

    def content(self) -> list[Content]:
        # Gold train sentences become demos and gold dev is scored: both are in the prompts.
        paths = f"{self.task.relative(self.train_path)}, {self.task.relative(self.dev_path)}"
        return [Content(f"gold train+dev ({paths})", Sensitivity.PRIVATE)]

    def programs(self) -> dict[str, Any]:
        return {}

    def student(self) -> Any:
        from clinsynth.programs.data_to_label import DataToLabel

        return DataToLabel(self.taxonomy)

    def problem(self, student: Any, handle: LMHandle) -> Problem:
        from clinsynth.programs.compile_labeler import labeler_problem

        c = self.config
        return labeler_problem(student, self.train, self.dev, handle, self.k, c.seed, c.threads, c.trials)

    def score(self, program: Any, handle: LMHandle, desc: str) -> dict[str, Any]:
        from clinsynth.programs.scoring import score_labeller

        return score_labeller(program, self.dev, handle, threads=self.config.threads, desc=desc).summary()

    def demos_from(self, compiled: Any, optimizer: Optimizer) -> DemoSource:
        # Demos are gold train sentences; an optimizer that writes instructions from the
        # train examples may quote them even when it keeps no demos.
        if has_demos(compiled) or optimizer.learns_instructions:
            return DemoSource(f"gold train ({self.task.relative(self.train_path)})", Sensitivity.PRIVATE)
        return NO_DEMOS

    def metadata(self, compiled: Any, optimizer: Optimizer) -> dict[str, Any]:
        return {
            "trials": self.config.trials,
            "train": {"path": self.task.relative(self.train_path), "n": len(self.train)},
            "dev": {"path": self.task.relative(self.dev_path), "n": len(self.dev)},
            # decisions: dev_after is scored with thresholds fitted on dev; this is the honest estimate.
            **({"dev_cross_fitted": compiled.cross_fitted} if hasattr(compiled, "cross_fitted") else {}),
        }

    def call_costs(self, model: str, adapter: Any, k: int) -> _CallCosts:
        """Tokens of one labelling call on the dev sentences, zero-shot and with k train demos."""
        student = self.student()
        demos = [e.toDict() for e in self.train[:k]]
        inputs = [{"sentence": e.sentence} for e in self.dev] or [{"sentence": typical_sentence()}]
        zero = [count_tokens(model, prompt_messages(student.label, adapter, x)) for x in inputs]
        with_demos = [count_tokens(model, prompt_messages(student.label, adapter, x, demos)) for x in inputs]
        answer = answer_tokens(model, student.label, adapter, student.typical_answer())
        zero_mean, demos_mean = sum(zero) / len(zero), sum(with_demos) / len(with_demos)
        max_tokens = int(student.label.config.get("max_tokens") or 0)
        return _CallCosts(
            parts=[("labelling calls", 1, zero_mean, demos_mean, answer, max_tokens)],
            assumptions=[f"completion: {answer} tokens a labelling answer (one label)"],
        )

    def rows(self, before: dict[str, Any] | None, after: dict[str, Any]) -> list[list[Any]]:
        keys = ("mean_set_f1", "micro_f1", "macro_f1", "binary_f1", "failed", "seconds_per_sentence")
        rows = [["before (zero-shot)", *(before[k] for k in keys)]] if before else []
        rows.append([f"after ({self.config.optimizer})", *(after[k] for k in keys)])
        return rows


class _GeneratorJob:
    headers = ["dev target", "before", "after", "agreement", "diversity", "realism"]

    def __init__(self, task: Task, config: CompileConfig, k: int, spec: LMSpec) -> None:
        from clinsynth.programs import compile_generator as cg
        from clinsynth.programs.labellers import load_labeller

        self.task, self.config, self.k = task, config, k
        self.taxonomy = task.taxonomy
        self.dev_path = config.dev or task.split_path("dev")
        self.gold_dev = read_records(self.dev_path, self.taxonomy)
        self.targets = cg.default_targets(self.taxonomy, self.gold_dev)
        seed, per_target = config.seed, config.per_target
        self.dev = cg.generation_examples(self.taxonomy, self.targets, per_target, seed, start=0)
        self.train = cg.generation_examples(self.taxonomy, self.targets, 2 * per_target, seed, start=1000)
        self.selection = cg.generation_examples(self.taxonomy, self.targets, per_target, seed, start=cg.SELECTION_START)
        self.labeler_path = config.labeler or default_compiled(task, "data_to_label", spec)
        self.labeler = load_labeller(self.taxonomy, self.labeler_path)
        self.metric: Any = None  # needs the LM: set in problem()

    def content(self) -> list[Content]:
        # Gold dev is only embedded on this machine (realism, leak check), never prompted.
        return [Content("the guideline and generated sentences", Sensitivity.SYNTHETIC)]

    def programs(self) -> dict[str, Any]:
        # The round-trip labeller runs on the same LM: its demos (gold, if compiled) are in those prompts.
        return {"labeler": self.labeler}

    def student(self) -> Any:
        from clinsynth.programs.label_to_data import LabelToData

        return LabelToData(self.taxonomy)

    def _metric(self, handle: LMHandle) -> Any:
        if self.metric is None:
            from clinsynth.programs.compile_generator import GenerationMetric

            from clinsynth.model import embeddings

            self.metric = GenerationMetric(self.labeler, handle.lm, self.gold_dev, embeddings.encode)
        return self.metric

    def problem(self, student: Any, handle: LMHandle) -> Problem:
        from clinsynth.programs.compile_generator import generator_problem

        c = self.config
        metric = self._metric(handle)
        return generator_problem(
            student, self.train, self.dev, metric, handle, self.k, c.seed, c.threads, c.trials, self.selection
        )

    def score(self, program: Any, handle: LMHandle, desc: str) -> dict[str, Any]:
        from clinsynth.programs.compile_generator import generator_dev_scores

        return generator_dev_scores(program, self.dev, self._metric(handle), handle, self.config.threads, desc)

    def demos_from(self, compiled: Any, optimizer: Optimizer) -> DemoSource:
        # Demos are the program's own calls that passed the metric's gate (which refuses
        # any sentence at cosine >= 0.95 to gold dev): generated text.
        if has_demos(compiled):
            return DemoSource("generated sentences (label-to-data calls)", Sensitivity.SYNTHETIC)
        return NO_DEMOS

    def metadata(self, compiled: Any, optimizer: Optimizer) -> dict[str, Any]:
        from clinsynth.programs.compile_generator import WEIGHTS

        return {
            "metric": WEIGHTS,
            "labeler": project_relative(self.labeler_path),
            "dev": {"gold": self.task.relative(self.dev_path), "targets": self.targets, "calls": len(self.dev)},
            "train_calls": len(self.train),
            "selection_calls": len(self.selection) if optimizer.name == "random-search" else 0,
            "demos": len(compiled.generate.demos),
        }

    def call_costs(self, model: str, adapter: Any, k: int) -> _CallCosts:
        """Tokens of one generation call on the dev requests (zero-shot and with k demos), and its round trips."""
        student = self.student()
        inputs = [{"target": e.target, "constraints": e.constraints, "n": e.n} for e in self.dev]
        answer_outputs = {"sentences": [typical_sentence()] * student.n}
        demos = [{**x, **answer_outputs} for x in inputs[:k]]
        zero = [count_tokens(model, prompt_messages(student.generate, adapter, x)) for x in inputs]
        with_demos = [count_tokens(model, prompt_messages(student.generate, adapter, x, demos)) for x in inputs]
        answer = answer_tokens(model, student.generate, adapter, answer_outputs)
        rt_prompt = count_tokens(model, prompt_messages(self.labeler.label, adapter, {"sentence": typical_sentence()}))
        rt_answer = answer_tokens(model, self.labeler.label, adapter, self.labeler.typical_answer())
        n, rt_max = student.n, int(self.labeler.label.config.get("max_tokens") or 0)
        gen_max = int(student.generate.config.get("max_tokens") or 0)
        return _CallCosts(
            parts=[
                ("generation calls", 1, sum(zero) / len(zero), sum(with_demos) / len(with_demos), answer, gen_max),
                ("round trips", n, rt_prompt, rt_prompt, rt_answer, rt_max),
            ],
            assumptions=[
                f"completion: {answer} tokens a generation call ({n} sentences of {TYPICAL_SENTENCE_WORDS} words), "
                f"{rt_answer} a round-trip answer; {n} round trips a call; demos are {k} calls of their own",
            ],
        )

    def rows(self, before: dict[str, Any] | None, after: dict[str, Any]) -> list[list[Any]]:
        rows = []
        for target in self.targets:
            b = before["per_target"].get(target) if before else None
            a = after["per_target"][target]
            rows.append([target, b["score"] if b else "", a["score"], a["agreement"], a["diversity"], a["realism"]])
        overall = after["overall"]
        rows.append(
            [
                "overall",
                before["overall"]["score"] if before else "",
                *[overall[c] for c in ("score", "agreement", "diversity", "realism")],
            ]
        )
        return rows


def _job(task: Task, config: CompileConfig, k: int, spec: LMSpec) -> _Job:
    if config.program == "data-to-label":
        return _LabellerJob(task, config, k)
    return _GeneratorJob(task, config, k, spec)


def _prepare(task: Task, config: CompileConfig, lm: LMSpec | None) -> tuple[Any, int, LMSpec, _Job]:
    """The optimizer, k, LM spec and job of a compile: what the run and its cost plan both start from."""
    if config.program not in PROGRAMS:
        raise ClinsynthError(f"unknown program {config.program!r}; choose from {', '.join(PROGRAMS)}")
    # Before reading data or starting an LM: a wrong choice should not cost a server start.
    optimizer = get_optimizer(config.optimizer, config.program)
    k = DEFAULT_K[config.program] if config.k is None else config.k
    spec = lm or task.lm(ROLE)
    return optimizer, k, spec, _job(task, config, k, spec)


def compile_program(
    task: Task, config: CompileConfig, handle: LMHandle | None = None, lm: LMSpec | None = None
) -> CompileResult:
    """Compile ``config.program`` with ``config.optimizer``; save it and return the scores.

    The LM is ``lm``, else the task's ``prompt_model``. ``handle`` replaces the session's
    LM (tests inject a DummyLM); without one the LM is opened for the ``prompt_model``
    role after the privacy check, which raises ``PrivacyError`` before any server starts
    or any request is sent.
    """
    optimizer, k, spec, job = _prepare(task, config, lm)
    if handle is None:
        handle = open_lm(
            spec, ROLE, task.privacy, job.content(), job.programs(), env_folders=[task.root], timeout=config.timeout,
            limits=config.limits,
        )  # fmt: skip
    else:
        for name, program in job.programs().items():
            admit(handle, name, program)
    out = config.out or compiled_path(
        PROGRAMS[config.program], handle.name, task.compiled_dir, api_base=handle.endpoint.api_base
    )

    student = job.student()
    with handle.context():
        before = None if config.skip_before else job.score(student, handle, "dev, before")
        _stop_if_over_budget(handle)
        started = time.monotonic()
        try:
            compiled = optimizer.run(job.problem(student.deepcopy(), handle))
        except Exception:
            _stop_if_over_budget(handle)  # an optimizer may fail on the refused calls: say why
            raise
        compile_seconds = time.monotonic() - started
        _stop_if_over_budget(handle)
        after = job.score(compiled, handle, "dev, after")
        _stop_if_over_budget(handle)

    demos_from = job.demos_from(compiled, optimizer)
    compiled.demos_from = demos_from  # as load_compiled would set it, for callers that keep using it
    metadata = {
        "clinsynth": {
            "program": config.program,
            "optimizer": config.optimizer,
            "lm": handle.name,
            "endpoint": endpoint_record(handle.endpoint, handle.name),
            "seed": config.seed,
            "k": k,
            **job.metadata(compiled, optimizer),
            "demos_from": demos_from.to_dict(),
            "dev_before": before,
            "dev_after": after,
            "candidates": search_candidates(compiled),
            "compile_seconds": round(compile_seconds, 1),
            "usage": handle.usage(),
            "created_at": now_iso(),
        },
        "taxonomy_sha256": taxonomy_sha256(task.taxonomy),
    }
    save_compiled(compiled, out, metadata)
    return CompileResult(
        out=out,
        program=config.program,
        optimizer=config.optimizer,
        lm=handle.name,
        before=before,
        after=after,
        metadata=metadata,
        headers=list(job.headers),
        rows=job.rows(before, after),
        compiled=compiled,
        usage=handle.usage(),
    )


def _stop_if_over_budget(handle: LMHandle) -> None:
    """Scoring and optimizers record a refused call as a failed example; a spent budget stops the compile.

    Nothing is saved: a program compiled on a budget cut short would be scored on failures.
    """
    meter = handle.meter
    if meter is not None and meter.stopped is not None:
        raise BudgetExceeded(f"{meter.stopped}; nothing saved: rerun with a larger --max-cost")


def plan_compile(task: Task, config: CompileConfig, lm: LMSpec | None = None) -> CostPlan:
    """The cost plan of ``compile_program`` (``--dry-run``): nothing is opened, started or sent.

    Prompts are counted on the job's own dev examples, zero-shot and with ``k`` demos (the
    first k train examples stand in for the optimizer's picks). How many calls an optimizer
    makes depends on what it finds; the plan counts its most, as the assumptions say.
    """
    optimizer, k, spec, job = _prepare(task, config, lm)
    endpoint, refused = planned_endpoint(
        spec, lambda: gate(spec, ROLE, task.privacy, job.content(), job.programs(), env_folders=[task.root])
    )
    plan = CostPlan("compile", spec.model, endpoint, refused=refused, max_cost=config.limits.max_cost)
    unit = job.call_costs(spec.model, make_adapter(default_adapter(spec.model)), k)
    n_dev, n_train = len(job.dev), len(job.train)
    valset = len(getattr(job, "selection", None) or job.dev)
    runs = {  # evaluations of the program (each ``unit``) an optimizer makes at most, and what that assumes
        "labeled-fewshot": (0, "labeled-fewshot: no LM call"),
        "knn": (0, "knn: no LM call to compile"),
        "fewshot-knn": (0, "fewshot-knn: no LM call to compile"),
        "bootstrap": (n_train, f"bootstrap: at most every train example once ({n_train})"),
        "random-search": (
            config.trials * n_train + (config.trials + 3) * valset,
            f"random-search: {config.trials} trials x {n_train} train (bootstrapping, at most) + "
            f"{config.trials + 3} candidates x {valset} validation examples",
        ),
        "mipro": (
            max(2, config.trials // 2) * n_train + config.trials * min(25, n_dev),
            f"mipro: {max(2, config.trials // 2)} candidates x {n_train} train (bootstrapping, at most) + "
            f"{config.trials} trials x a minibatch of {min(25, n_dev)}; instruction proposals not counted",
        ),
        "gepa": (
            config.trials * n_dev,
            f"gepa: {config.trials} x {n_dev} metric calls; reflection calls not counted",
        ),
    }
    evaluations, assumption = runs[optimizer.name]
    if not config.skip_before:
        plan.lines += unit.lines("dev, before (zero-shot)", n_dev, demos=False)
    if evaluations:
        plan.lines += unit.lines(f"optimizer ({optimizer.name})", evaluations, demos=True)
    plan.lines += unit.lines(f"dev, after ({k} demos)", n_dev, demos=True)
    plan.assumptions += [assumption, *unit.assumptions, "no retries and no DSPy cache hits"]
    return plan

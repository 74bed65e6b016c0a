"""The main job, ``clinsynth run``: programs, silver, bronze, the experiment, the default model.

It calls the steps (``clinsynth.programs.steps``, ``clinsynth.model.train``) directly and prints
what they return. Full run:
the task's committed compiled programs and silver / bronze sets are used as they are
(``regenerate`` makes new ones under ``out_dir``, resumably); the augmentation experiment
cross-validates every mix of the task's ``[experiment]`` by note, with seeds and paired CIs
against gold (``evals.cv``, shared with ``python -m evals.run augmentation``); the default
model is trained on the mix cross-validation chose and saved where ``clinsynth predict``
finds it; the report (``augmentation.{md,html}``) ends with that model on gold test.

``quick``: the same steps in miniature, with real parts: the task's labeller LM labels a
few corpus sentences and writes a few bronze sentences, SetFit trains briefly on small
mixes over a few gold notes in two folds; everything goes under ``out_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from clinsynth.data.mixes import MixSources, best_mix
from clinsynth.data.task import LMSpec, Task
from clinsynth.errors import ClinsynthError, DataError
from clinsynth.jobs.resumable import MapSettings
from clinsynth.llm.lm import LMHandle
from clinsynth.llm.pricing import dollars
from clinsynth.model.classifier import TrainingBudget
from clinsynth.paths import PROJECT_ROOT
from clinsynth.report import format_table

if TYPE_CHECKING:  # the steps import heavy libraries: each is imported when its step runs
    from clinsynth.evals.cv import CVSettings
    from clinsynth.llm.cost import CostPlan
    from clinsynth.programs.steps.bronze import BronzeConfig
    from clinsynth.programs.steps.compile import CompileConfig
    from clinsynth.programs.steps.label import LabelConfig

QUICK_LABEL_LIMIT = 6
# A quick run is a smoke run of every step: unless --max-failures says otherwise, the failures
# a small LM leaves are shown in the step's result and never stop it (full runs stop: 0).
QUICK_MAX_FAILURES = 1_000_000
QUICK_BUDGET = TrainingBudget(epochs=2)
QUICK_SILVER = {"limit": QUICK_LABEL_LIMIT, "pool": 2000}  # full runs use the task's [label] settings
# Full runs use the task's [experiment] settings.
QUICK_EXPERIMENT = {"mixes": ("gold", "gold+silver", "gold+bronze"), "folds": 2, "pool_limit": 160}


@dataclass(frozen=True)
class RunConfig:
    out_dir: Path
    lm: LMSpec | None = None  # overrides the task's LM for every role
    quick: bool = False
    regenerate: bool = False
    seeds: tuple[int, ...] | None = None  # the experiment's; None: the task's [experiment] (or 0, 1, 2)
    seed: int = 0
    # Attempts, timeout, fail-fast, --max-failures and cost guards of every LM step (compile, silver, bronze).
    map: MapSettings = MapSettings()
    # How the experiment's runs and the default model are trained (a larger --encoder, ...);
    # None: the defaults (QUICK_BUDGET with ``quick``).
    budget: TrainingBudget | None = None


class StepIncomplete(ClinsynthError):
    """A step left more failed items than ``--max-failures``: the job stops before later steps use its output.

    The items are in the step's failures file; a rerun retries them and resumes.
    """


@dataclass
class StepReport:
    name: str
    result: str = ""
    seconds: float = 0.0


@dataclass
class RunResult:
    steps: list[StepReport] = field(default_factory=list)
    best_mix: str = "gold"
    model_dir: Path | None = None
    report: Path | None = None
    seconds: float = 0.0


class MainJob:
    def __init__(self, task: Task, config: RunConfig) -> None:
        self.task = task
        self.config = config
        self.result = RunResult()
        self.spent = 0.0  # US dollars the LM steps have spent so far: --max-cost bounds the whole job
        self.calls = 0  # LM calls they made (answers from DSPy's cache are free and not counted)
        self.unpriced = False  # whether a step's LM had no price (its spend is unknown)

    def run(self) -> RunResult:
        self.config.out_dir.mkdir(parents=True, exist_ok=True)
        plan: list[tuple[str, Callable[[], str]]] = [
            ("programs", self.programs),
            ("silver", self.silver),
            ("bronze", self.bronze),
            ("experiment", self.experiment),
            ("default model", self.default_model),
            ("report", self.report),
        ]
        started = time.monotonic()
        for k, (name, fn) in enumerate(plan, 1):
            print(f"\n[{k}/{len(plan)}] {name}", flush=True)
            t0 = time.monotonic()
            try:
                step = StepReport(name, fn())
            except StepIncomplete:
                self.result.steps.append(StepReport(name, "stopped: too many failures", time.monotonic() - t0))
                raise
            step.seconds = time.monotonic() - t0
            self.result.steps.append(step)
            print(f"      {step.result} ({step.seconds:.0f} s)", flush=True)
        self.result.seconds = time.monotonic() - started
        return self.result

    def summary_table(self) -> str:
        return format_table(
            ["step", "result", "seconds"], [[s.name, s.result, round(s.seconds)] for s in self.result.steps]
        )

    # -- steps ------------------------------------------------------------------------

    def lm(self, role: str) -> LMSpec:
        return self.config.lm or self.task.lm(role)

    def programs(self) -> str:
        from clinsynth.llm.compiled import default_compiled
        from clinsynth.programs.steps.compile import compile_program

        labeler = default_compiled(self.task, "data_to_label", self.lm("labeler"))
        used = ""
        if self.compiles:
            print(f"      no compiled labeller for {self.lm('labeler').model}: compiling one", flush=True)
            compiled = compile_program(self.task, self.compile_config(), lm=self.lm("prompt_model"))
            used = self._spend(compiled.usage)
            labeler = compiled.out
        generator = default_compiled(self.task, "label_to_data", self.lm("generator"))
        return (
            f"labeller {self.task.relative(labeler) if labeler else 'zero-shot'}; "
            f"generator {self.task.relative(generator) if generator else 'zero-shot (no compiled generator)'}{used}"
        )

    def silver(self) -> str:
        from clinsynth.programs.steps.label import label_sentences

        if not self.generated and self.task.silver.exists():
            return f"committed {self.task.relative(self.task.silver)}: {_count(self.task.silver)} records"
        result = label_sentences(self.task, self.silver_config(), self.silver_path)
        used = self._spend(result.usage)
        self._stop_if_incomplete("silver", result.failed, "sentences", result.failures_path)
        failed = f"; {result.failed} failed (rerun to retry: {result.failures_path})" if result.failed else ""
        n = _count(self.silver_path)
        by = result.lm or "earlier runs"
        return f"{self.task.relative(self.silver_path)}: {n} records labelled by {by}{failed}{used}"

    def bronze(self) -> str:
        from clinsynth.programs.steps.bronze import generate_bronze

        if not self.generated and self.task.bronze.exists():
            return f"committed {self.task.relative(self.task.bronze)}: {_count(self.task.bronze)} records"
        result = generate_bronze(self.task, self.bronze_config(), out=self.bronze_path)
        used = self._spend(result.usage)
        failed = result.failed_calls + result.failed_round_trips
        self._stop_if_incomplete("bronze", failed, "calls and round trips", result.failures_path)
        return f"{self.task.relative(self.bronze_path)}: {len(result.kept)} records kept{used}"

    def experiment(self) -> str:
        from clinsynth.evals import experiment
        from clinsynth.evals.core import mean_sd_text
        from clinsynth.evals.cv_report import ci_text

        cfg = self.config
        settings, work_dir = self.experiment_settings()
        changed = cfg.budget.changes() if cfg.budget else {}
        flags = "".join(f" --{field.replace('_', '-')} {value}" for field, value in changed.items())
        command = "clinsynth run" + (" --quick" if cfg.quick else "") + f" --task {_shown(self.task.root)}{flags}"
        report, summary = experiment.cross_validate_task(self.task, settings, self.report_dir, command,
                                                 sources=self.sources, work_dir=work_dir,
                                                 model_dir=self.model_dir)  # fmt: skip
        rows = [[s["system"], mean_sd_text(s["micro_f1"]), f"{s['macro_f1'][0]:.3f}", ci_text(s, "macro_f1")]
                for s in summary["systems"]]  # fmt: skip
        print(format_table(["system", "micro F1 (CV)", "macro F1 (CV)", "Δ macro vs gold"], rows), flush=True)
        self.result.best_mix = best_mix(summary) or "gold"
        self.result.report = report
        return f"{len(summary['systems'])} systems; {self.result.best_mix} chosen; report {self.task.relative(report)}"

    def experiment_settings(self) -> tuple[CVSettings, Path | None]:
        """The experiment's settings and where its finished runs are kept (None: the task's, shared
        with ``python -m evals.run augmentation`` and committed with the task)."""
        from clinsynth.evals import cv

        cfg = self.config
        if cfg.quick:
            settings = cv.CVSettings.for_task(self.task, seeds=(cfg.seed,), budget=self.budget, **QUICK_EXPERIMENT)
            return settings, cfg.out_dir / cv.RUNS_FOLDER
        return cv.CVSettings.for_task(self.task, seeds=cfg.seeds, budget=self.budget), None

    def default_model(self) -> str:
        from clinsynth.app.predict import predict_texts
        from clinsynth.model.train import TrainConfig, default_llm_check, ensure_trained, reference_model_dir

        mix = self.result.best_mix
        checked = default_llm_check(self.task, mix, self.report_dir)
        info, reused = ensure_trained(self.task, TrainConfig(mix=mix, budget=self.budget, sources=self.sources,
                                                             llm_check=checked), self.model_dir)  # fmt: skip
        examples = list(self.task.examples)
        lm = self._check_handle("the task's example sentences (clinsynth.toml)") if examples else None
        for row in predict_texts(self.task, examples, self.model_dir, backend="torch", handle=lm) if examples else []:
            print(f"      {row['labels'] or ['NONE']}  <- {row['text']}")
        spent = self._spend(lm.usage()) if lm else ""
        self.result.model_dir = self.model_dir
        # Gold test is quoted once, by the report step, beside the baselines and with paired CIs.
        words = (f"{self.task.relative(self.model_dir)} {'reused, as ' if reused else ''}trained on {mix}"
                 f"{', LLM-checked' if checked else ''}: gold dev micro F1 "
                 f"{info.dev_scores['micro_f1']:.3f}")  # fmt: skip
        if mix != "gold":
            # Gold test's paired comparison needs the gold-only model trained the same way.
            _, reused = ensure_trained(self.task, TrainConfig(mix="gold", budget=self.budget, sources=self.sources),
                                       reference_model_dir(self.model_dir))  # fmt: skip
            words += f"; and its gold-only reference{' (reused)' if reused else ''}"
        return words + spent

    def report(self) -> str:
        from clinsynth.evals.cv import RULE_LIST, TEST_TEXT, refresh_test_line

        check = self._check_handle(TEST_TEXT) if (self.model_dir / "clinsynth.json").exists() else None
        report, test = refresh_test_line(self.task, self.report_dir, self.model_dir, check)
        scores = {row["system"]: row for row in test["systems"]}
        words = f"{self.task.relative(report)} (and .html)"
        if test["default"] is None:
            return words
        default = scores[test["default"]]
        words += (f"; gold test ({test['sentences']} sentences): default model micro / macro F1 "
                  f"{default['micro_f1']:.3f} / {default['macro_f1']:.3f}")  # fmt: skip
        if RULE_LIST in scores:
            words += f", rule list {scores[RULE_LIST]['micro_f1']:.3f} / {scores[RULE_LIST]['macro_f1']:.3f}"
        return words + (self._spend(check.usage()) if check else "")

    def _check_handle(self, what: str) -> LMHandle | None:
        """The LM of the default model's LLM check, opened once for a step (privacy-checked for ``what``) so
        the job counts its calls; None for a model without the check."""
        from clinsynth.programs.addition_check import AdditionCheck

        check = AdditionCheck.for_model(self.task, self.model_dir, what)
        return check.handle if check else None

    @property
    def budget(self) -> TrainingBudget:
        """How the experiment's runs and the default model are trained."""
        return self.config.budget or (QUICK_BUDGET if self.config.quick else TrainingBudget())

    # -- what the LM steps would send (--dry-run) --------------------------------------

    def plan(self) -> list[CostPlan]:
        """The cost plans of the LM steps this run would take: nothing is opened, started or sent.

        Each is planned as its step would run now: silver and the bronze round trip count with
        the labeller there is now (a run compiling one first uses that one instead, as their
        assumptions say).
        """
        from clinsynth.programs.steps.bronze import plan_bronze
        from clinsynth.programs.steps.compile import plan_compile
        from clinsynth.programs.steps.label import plan_labelling

        plans, later = [], []
        if self.compiles:
            plans.append(plan_compile(self.task, self.compile_config(), lm=self.lm("prompt_model")))
        if self.generated or not self.task.silver.exists():
            later.append(plan_labelling(self.task, self.silver_config(), self.silver_path))
        if self.generated or not self.task.bronze.exists():
            later.append(plan_bronze(self.task, self.bronze_config(), self.bronze_path))
        if self.compiles:
            for plan in later:
                plan.assumptions.append(
                    "labeller: counted as it is now; the run uses the one its compile step makes, whose gold "
                    "demos lengthen every labelling prompt (see compile's 'after' line)"
                )
        return plans + later

    def training_plan(self) -> list[str]:
        """What the run would train and about how long it takes on 2 CPU cores (``--dry-run``): lines
        to print. Nothing is trained, embedded or written."""
        from clinsynth.data.mixes import load_mix, split_hybrid
        from clinsynth.evals.cv import plan_task
        from clinsynth.llm.cost import duration_words
        from clinsynth.model.train import default_mix

        settings, work_dir = self.experiment_settings()
        try:
            pending, kept = plan_task(self.task, settings, sources=self.sources, work_dir=work_dir)
        except DataError as exc:  # silver or bronze this run would make first
            return [f"training: estimated once the data it trains on exist ({exc})"]
        budget = settings.budget
        mix = "gold" if self.config.quick else default_mix(self.task)
        models = [(mix, len(load_mix(split_hybrid(mix)[0], self.task.taxonomy, self.sources)))]
        if mix != "gold":
            models.append(("gold", len(load_mix("gold", self.task.taxonomy, self.sources))))
        estimates = [budget.estimated_seconds(n) for n in [n for *_, n in pending] + [n for _, n in models]]
        seconds = None if None in estimates else sum(e for e in estimates if e is not None)
        trained = ", ".join(f"{m} ({n} sentences)" for m, n in models)
        return [
            f"training (SetFit, no LM): {len(pending)} experiment runs to train, {kept} kept from earlier runs; "
            f"then the default model on {trained}, the mix the committed report chose (the run's own "
            "cross-validation decides)",
            f"time: {duration_words(seconds, 'training')}",
        ]

    # -- each LM step's settings, for the run and its plan alike ----------------------

    @property
    def compiles(self) -> bool:
        """Whether the programs step compiles a labeller (none is compiled for the labeller LM)."""
        from clinsynth.llm.compiled import default_compiled

        return not self.config.quick and default_compiled(self.task, "data_to_label", self.lm("labeler")) is None

    def compile_config(self) -> CompileConfig:
        from clinsynth.programs.steps.compile import CompileConfig

        return CompileConfig(program="data-to-label", optimizer="labeled-fewshot", dev_limit=60,
                             threads=self.config.map.threads, timeout=self.config.map.timeout,
                             limits=self.step_map.limits)  # fmt: skip

    def silver_config(self) -> LabelConfig:
        from clinsynth.programs.steps.label import LabelConfig

        quick = QUICK_SILVER if self.config.quick else {}
        return LabelConfig.for_silver(self.task, seed=self.config.seed, lm=self.lm("labeler"),
                                      parquet=not self.config.quick, map=self.step_map, **quick)  # fmt: skip

    def bronze_config(self) -> BronzeConfig:
        from clinsynth.programs.steps.bronze import BronzeConfig

        config = BronzeConfig.for_task(self.task, seed=self.config.seed, lm=self.lm("generator"), map=self.step_map)
        if not self.config.quick:
            return config
        categories = self.task.quick_categories or tuple(self.task.taxonomy.names[:2])
        return replace(config, per_category=1, categories=tuple(categories), negatives=1, multi_label=0,
                       max_rounds=1, per_call=3)  # fmt: skip

    @property
    def step_map(self) -> MapSettings:
        """The map settings for the next LM step: ``--max-cost`` less what earlier steps spent."""
        limits = self.config.map.limits
        if limits.max_cost is None:
            return self.config.map
        left = replace(limits, max_cost=max(0.0, limits.max_cost - self.spent))
        return replace(self.config.map, limits=left)

    def _spend(self, usage: dict | None) -> str:
        """Count a step's real usage against the job's; a few words for its result ("" when it sent nothing)."""
        if not usage or not usage.get("calls"):
            return ""
        self.calls += usage["calls"]
        if usage.get("cost_usd") is None:
            self.unpriced = True
        else:
            self.spent += usage["cost_usd"]
        return f"; {_calls(usage['calls'])}, {dollars(usage.get('cost_usd'), 'unknown price')}"

    def usage_words(self) -> str:
        """The job's LM calls and dollars so far, for its closing line."""
        if not self.calls:
            return "no LM calls"
        return f"LM calls {self.calls}, {dollars(None if self.unpriced else self.spent, 'unknown price')}"

    def _stop_if_incomplete(self, step: str, failed: int, what: str, failures: Path | None) -> None:
        allowed = self.config.map.max_failures
        if failed > allowed:
            raise StepIncomplete(
                f"{step}: {failed} {what} still failed after {self.config.map.attempts} attempts "
                f"(more than --max-failures {allowed}); they are in {failures}. Rerun to retry them "
                f"(finished work is kept), or pass --max-failures {failed} to go on without them"
            )

    # -- where things go --------------------------------------------------------------

    @property
    def generated(self) -> bool:
        return self.config.quick or self.config.regenerate

    @property
    def silver_path(self) -> Path:
        return self.config.out_dir / "silver.jsonl"

    @property
    def bronze_path(self) -> Path:
        return self.config.out_dir / "bronze.jsonl"

    @property
    def sources(self) -> MixSources:
        if self.generated:
            return MixSources.for_task(self.task, silver=self.silver_path, bronze=self.bronze_path)
        return MixSources.for_task(self.task)

    @property
    def report_dir(self) -> Path:
        return self.config.out_dir / "report" if self.config.quick else self.task.reports_dir

    @property
    def model_dir(self) -> Path:
        return self.config.out_dir / "model" if self.config.quick else self.task.model_dir


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


def _calls(n: int) -> str:
    return f"{n} LM call" + ("" if n == 1 else "s")


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


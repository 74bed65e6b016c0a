"""The main job, ``clinsynth run``: programs, silver, bronze, the experiment, the default model.

Full run (embedded defaults): the committed compiled programs and the committed silver and
bronze sets are used as they are (``--regenerate`` makes new ones with ``--lm`` under
``--out-dir``, resumably); the augmentation experiment trains every mix with three seeds
and writes ``reports/augmentation.*``; the default model is trained on the mix that scored
best on gold dev and saved where ``clinsynth predict`` finds it.

``--quick``: the same steps in miniature, with real parts: the embedded LLM labels a few
corpus sentences and writes a few bronze sentences, SetFit trains briefly on small mixes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from clinsynth.classifier import TrainingBudget
from clinsynth.errors import ClinsynthError
from clinsynth.lm import lm_name_for
from clinsynth.mixes import MixSources
from clinsynth.models import DEFAULT_MODEL_DIR, default_mix, train_model
from clinsynth.paths import DATA_DIR, PROJECT_ROOT
from clinsynth.report import format_table
from clinsynth.taxonomy import Taxonomy, load_taxonomy

QUICK_CATEGORIES = "COGNITIVE_IMPAIRMENT,TREATMENT"
EXAMPLES = (
    "Her daughter says she has been getting lost while driving to the store.",
    "MoCA 18/30 today; started donepezil 5 mg nightly.",
    "Abdomen is soft and nontender.",
)


@dataclass
class RunConfig:
    out_dir: Path
    lm: str = "local"
    api_base: str | None = None
    quick: bool = False
    regenerate: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    seed: int = 0


@dataclass
class Step:
    name: str
    result: str = ""
    seconds: float = 0.0


@dataclass
class MainJob:
    config: RunConfig
    taxonomy: Taxonomy = field(default_factory=load_taxonomy)
    steps: list[Step] = field(default_factory=list)

    def run(self) -> int:
        cfg = self.config
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
        plan = [
            ("programs", self.programs),
            ("silver", self.silver),
            ("bronze", self.bronze),
            ("experiment", self.experiment),
            ("default model", self.default_model),
        ]
        started = time.monotonic()
        for k, (name, fn) in enumerate(plan, 1):
            print(f"\n[{k}/{len(plan)}] {name}", flush=True)
            t0 = time.monotonic()
            step = Step(name, fn())
            step.seconds = time.monotonic() - t0
            self.steps.append(step)
            print(f"      {step.result} ({step.seconds:.0f} s)", flush=True)
        print()
        print(format_table(["step", "result", "seconds"], [[s.name, s.result, round(s.seconds)] for s in self.steps]))
        print(f"\nmain job done in {time.monotonic() - started:.0f} s; outputs in {cfg.out_dir}")
        return 0

    # -- steps ------------------------------------------------------------------------

    def programs(self) -> str:
        from programs.label import default_program_path

        lm_name = lm_name_for(self.config.lm)
        labeler = default_program_path(lm_name)
        if labeler is None and not self.config.quick:
            from programs import compile as compile_cli

            print(f"      no compiled labeller for {lm_name}: compiling one (labeled-fewshot)", flush=True)
            self._check(
                compile_cli.main(
                    ["--program", "data-to-label", "--optimizer", "labeled-fewshot", "--lm", self.config.lm,
                     *self._api_base(), "--dev-limit", "60"]
                ),
                "compile",
            )  # fmt: skip
            labeler = default_program_path(lm_name)
        from clinsynth.compiled import compiled_path

        generator = compiled_path("label_to_data", lm_name)
        return (
            f"labeller {_rel(labeler) if labeler else 'zero-shot'}; "
            f"generator {_rel(generator) if generator.exists() else 'zero-shot (no compiled generator)'}"
        )

    def silver(self) -> str:
        from programs import label as label_cli

        committed = DATA_DIR / "silver" / "silver.jsonl"
        if not self.config.quick and not self.config.regenerate and committed.exists():
            return f"committed {_rel(committed)}: {_count(committed)} records"
        out = self.silver_path
        argv = [
            "--lm",
            self.config.lm,
            *self._api_base(),
            "--prefilter",
            "--out",
            str(out),
            "--seed",
            str(self.config.seed),
        ]
        argv += (
            ["--limit", "6", "--pool", "2000", "--no-parquet"]
            if self.config.quick
            else ["--limit", "2000", "--pool", "30000"]
        )
        self._check(label_cli.main(argv), "silver labelling")
        return f"{_rel(out)}: {_count(out)} records labelled by {self.config.lm}"

    def bronze(self) -> str:
        from programs import generate as generate_cli

        committed = DATA_DIR / "bronze" / "bronze.jsonl"
        if not self.config.quick and not self.config.regenerate and committed.exists():
            return f"committed {_rel(committed)}: {_count(committed)} records"
        out = self.bronze_path
        argv = ["--lm", self.config.lm, *self._api_base(), "--out", str(out), "--seed", str(self.config.seed)]
        if self.config.quick:
            argv += ["--per-category", "1", "--categories", QUICK_CATEGORIES, "--negatives", "1",
                     "--multi-label", "0", "--max-rounds", "1", "--per-call", "3"]  # fmt: skip
        else:
            argv += ["--per-category", "50"]
        self._check(generate_cli.main(argv), "bronze generation")
        return f"{_rel(out)}: {_count(out)} records written by {self.config.lm}"

    def experiment(self) -> str:
        from evals import augmentation

        cfg = self.config
        experiment = augmentation.Experiment(
            sources=self.sources,
            # The full run shares finished runs with `python -m evals.run augmentation`.
            work_dir=cfg.out_dir / "augmentation" if cfg.quick else augmentation.Experiment().work_dir,
            seeds=(cfg.seed,) if cfg.quick else cfg.seeds,
        )
        if cfg.quick:
            experiment.mixes = ("gold", "gold+silver", "gold+bronze")
            experiment.budget = self.budget
            experiment.train_limit = 80
        command = "clinsynth run" + (" --quick" if cfg.quick else "")
        summary = augmentation.run(experiment, self.taxonomy, self.report_dir, command)
        rows = [
            [s["system"], f"{s['micro_f1'][0]:.3f} ± {s['micro_f1'][1]:.3f}", f"{s['macro_f1'][0]:.3f}"]
            for s in summary["systems"]
        ]
        print(format_table(["system", "micro F1 (gold test)", "macro F1"], rows), flush=True)
        self.best = augmentation.best_mix(summary) or "gold"
        return f"{len(summary['systems'])} systems; report {_rel(self.report_dir / 'augmentation.md')}"

    def default_model(self) -> str:
        from clinsynth.classifier import SignsClassifier

        mix = getattr(self, "best", None) or default_mix()
        if self.config.quick:
            mix = "gold"
        model_dir = self.model_dir
        classifier = train_model(mix, self.taxonomy, model_dir, budget=self.budget, sources=self.sources)
        loaded = SignsClassifier.load(model_dir, self.taxonomy)
        for text, labels in zip(EXAMPLES, loaded.predict(list(EXAMPLES)), strict=True):
            print(f"      {labels or ['NONE']}  <- {text}")
        test = classifier.info.test_scores
        return f"{_rel(model_dir)} trained on {mix}: gold test micro F1 {test['micro_f1']:.3f}"

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
            return MixSources(silver=self.silver_path, bronze=self.bronze_path)
        return MixSources()

    @property
    def report_dir(self) -> Path:
        return self.config.out_dir / "report" if self.config.quick else PROJECT_ROOT / "reports"

    @property
    def model_dir(self) -> Path:
        return self.config.out_dir / "model" if self.config.quick else DEFAULT_MODEL_DIR

    @property
    def budget(self) -> TrainingBudget:
        return TrainingBudget(max_steps=4) if self.config.quick else TrainingBudget()

    def _api_base(self) -> list[str]:
        return ["--api-base", self.config.api_base] if self.config.api_base else []

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code != 0:
            raise ClinsynthError(f"{what} failed (exit {code}); its output above says why; rerun to resume")


def _count(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open(encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


def _rel(path: Path | None) -> str:
    if path is None:
        return "-"
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)

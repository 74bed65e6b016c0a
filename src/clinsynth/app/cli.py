"""The ``clinsynth`` command: one entry point for every step of a task.

Each subcommand parses its flags into a step's config, calls the step
(``clinsynth.programs.steps``, ``clinsynth.model.train``, ``clinsynth.app.predict``) and prints its
result. ``label``, ``generate`` and ``compile`` share their parsers with
``python -m programs.label|generate|compile``; ``eval`` with ``python -m evals.run``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import clinsynth
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.cliargs import (
    MAP_DEFAULTS,
    add_budget_flags,
    add_cost_flags,
    add_engine_flags,
    add_map_flags,
    add_task_flag,
    budget_from_args,
    engine_from_args,
    interrupted,
    map_settings,
    print_plans,
)

if TYPE_CHECKING:  # imported when a command runs, so `clinsynth --help` stays fast
    from clinsynth.app.pipeline import RunConfig
    from clinsynth.data.task import Task

Formatter = argparse.ArgumentDefaultsHelpFormatter


def _task(args: argparse.Namespace):  # -> clinsynth.data.task.Task
    from clinsynth.data.task import load_task

    return load_task(args.task)


def cmd_init(args: argparse.Namespace) -> int:
    from clinsynth.app.init_task import init_task

    result = init_task(Path(args.dir), name=args.name, force=args.force)
    print(f"wrote a task template in {result.root}:")
    for path in result.files:
        print(f"  {path.relative_to(result.root)}")
    print("\nnext: replace taxonomy.yaml and gold/ with your task, then")
    for command in result.next_commands:
        print(f"  {command}")
    return 0


def run_config(args: argparse.Namespace, task: Task) -> RunConfig:
    """``clinsynth run``'s flags as the main job's config."""
    from dataclasses import replace

    from clinsynth.app.pipeline import QUICK_MAX_FAILURES, RunConfig
    from clinsynth.data.task import LMSpec

    settings = map_settings(args)
    if args.max_failures is None:  # unset: a full run stops at the first failure left, a quick run goes on
        settings = replace(settings, max_failures=QUICK_MAX_FAILURES if args.quick else MAP_DEFAULTS.max_failures)
    budget = budget_from_args(args)
    return RunConfig(
        out_dir=Path(args.out_dir) if args.out_dir else task.output_dir / ("quick" if args.quick else "run"),
        lm=LMSpec(args.lm, args.api_base) if args.lm else None,
        quick=args.quick,
        regenerate=args.regenerate,
        seeds=tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None,
        seed=args.seed,
        map=settings,
        budget=budget if budget.changes() else None,  # None: the job's defaults (a quick run's are smaller)
    )


def cmd_check(args: argparse.Namespace) -> int:
    from clinsynth.app.check import check_task
    from clinsynth.report import format_table

    task = _task(args)
    report = check_task(task)
    print(format_table(["checked", "found"], [list(row) for row in report.checked]))
    _print_warnings(report.warnings)
    print(f"{task.name}: ready to run" + (f" ({len(report.warnings)} warning(s))" if report.warnings else ""))
    return 0


def _print_warnings(warnings: list[str]) -> None:
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from clinsynth.app.check import check_task
    from clinsynth.app.pipeline import MainJob, StepIncomplete

    task = _task(args)
    _print_warnings(check_task(task).warnings)  # a bad gold label or config stops here, before any LM work
    config = run_config(args, task)
    out_dir = config.out_dir
    job = MainJob(task, config)
    if args.dry_run:
        code = print_plans(job.plan())
        print("\n".join(job.training_plan()))
        return code
    try:
        result = job.run()
    except StepIncomplete as exc:
        print(f"\n{job.summary_table()}\nerror: {exc}", file=sys.stderr)
        return 1
    print()
    print(job.summary_table())
    print(f"\nmain job ({task.name}) done in {result.seconds:.0f} s; {job.usage_words()}; outputs in {out_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from clinsynth.app.check import small_gold_warnings
    from clinsynth.data.mixes import MixSources
    from clinsynth.model.train import TrainConfig, train
    from clinsynth.report import format_table

    task = _task(args)
    _print_warnings(small_gold_warnings(task.gold(("train",))["train"], task.taxonomy.names))
    sources = MixSources.for_task(
        task, silver=args.silver, bronze=args.bronze, silver_min_confidence=args.silver_min_confidence
    )
    budget = budget_from_args(args)
    out = Path(args.out) if args.out else task.model_dir
    print(f"training on {args.mix} ({budget.recipe}, seed {args.seed}) -> {out}")
    config = TrainConfig(mix=args.mix, budget=budget, seed=args.seed, sources=sources, llm_check=args.llm_check)
    result = train(task, config, out=out)
    rows = [[k, result.dev_scores[k], result.test_scores[k]] for k in ("micro_f1", "macro_f1", "binary_f1")]
    print(format_table(["metric", "gold dev", "gold test"], rows))
    n = sum(result.classifier.info.train_sources.values())
    print(f"trained in {result.seconds:.0f} s on {n} sentences; model card: {out / 'README.md'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from clinsynth.app.predict import PredictConfig, predict, predict_texts
    from clinsynth.llm.pricing import dollars

    if args.text:
        if any(not t.strip() for t in args.text):
            raise ClinsynthError("--text: an empty sentence")
        model = Path(args.model) if args.model else None
        for row in predict_texts(_task(args), args.text, model, args.backend, args.trust_pickle):
            top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(row["scores"].items(), key=lambda kv: -kv[1])[:3])
            said = ", ".join(f"{k} {v}" for k, v in row.get("llm_check", {}).items())
            asked = f"; LLM check: {said}" if said else ""
            print(f"{', '.join(row['labels']) or 'NONE'}\t{row['text']}\t(top scores: {top}{asked})")
        return 0
    if not args.input or not args.out:
        raise ClinsynthError("predict needs --input FILE --out FILE, or --text SENTENCE")

    config = PredictConfig(
        input=Path(args.input),
        out=Path(args.out),
        model=Path(args.model) if args.model else None,
        notes=args.notes,
        backend=args.backend,
        ray=engine_from_args(args),
        trust_pickle=args.trust_pickle,
    )
    result = predict(_task(args), config)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.label_counts.items(), key=lambda kv: -kv[1]))
    print(
        f"{result.sentences} sentences -> {result.out} "
        f"({result.rate:.{0 if result.rate >= 10 else 2}f} sentences/s; model {result.model}; "
        f"backend {result.backend})"
    )
    print(f"labels: {counts or '-'}")
    if result.check_usage is not None:  # the model's card asks the labeller LM about the student's additions
        calls = result.check_usage.get("calls")
        print("LLM check: usage not metered" if calls is None else
              f"LLM check: {calls} LM call{'' if calls == 1 else 's'}, "
              f"{dollars(result.check_usage.get('cost_usd'), 'unknown price')}")  # fmt: skip
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from clinsynth.app.export_onnx import ExportOnnxConfig, export_onnx

    config = ExportOnnxConfig(model=Path(args.model) if args.model else None, quantize=args.quantize)
    result = export_onnx(_task(args), config)
    for variant, path in result.files.items():
        print(f"  {variant:<5} {path}")
    for variant, scores in result.dev_scores.items():
        print(f"  gold dev, {variant:<5} " + ", ".join(f"{m} {v:.4f}" for m, v in scores.items()))
    print(f"exported in {result.seconds:.0f} s; clinsynth predict now uses {result.default} (--backend torch to not)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from clinsynth.data.export import ExportConfig, export_data

    task = _task(args)
    out = Path(args.out) if args.out else task.output_dir / f"export-{args.format}"
    config = ExportConfig(out=out, format=args.format, sources=tuple(s.strip() for s in args.sources.split(",")))
    result = export_data(task.taxonomy, task.gold_dir, task.silver, task.bronze, config)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for split, n in result.splits.items():
        print(f"  {split:<12} {n}")
    print(f"exported to {result.out} ({args.format}); gold splits are private: do not share them")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from clinsynth.data.corpus import corpus_stats

    task = _task(args)
    path = Path(args.path) if args.path else task.corpus
    stats = corpus_stats(path)
    print(f"{path}: {stats['notes']} notes (deduplicated by transcription), {stats['sentences']} sentences")
    return 0


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from clinsynth.data.taxonomy import load_taxonomy

    taxonomy = load_taxonomy(args.path) if args.path else _task(args).taxonomy
    print(taxonomy.guideline_text)
    return 0


def cmd_review_export(args: argparse.Namespace) -> int:
    from clinsynth.app.review import export_review

    task = _task(args)
    result = export_review(
        task, args.source, args.n, strategy=args.strategy, seed=args.seed, out=args.out, random_share=args.random_share
    )
    print(
        f"{result.exported} sentences ({result.uncertain} uncertain, {result.random} random, "
        f"of {result.candidates}) -> {result.out}"
    )
    print(f"labelling config: {result.config}  (Label Studio: create a project with it, then import the tasks)")
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    from clinsynth.app.review import import_review

    result = import_review(_task(args), Path(args.input), args.split, out=args.out,
                           annotator_kind=args.annotator_kind, annotator_model=args.annotator_model)  # fmt: skip
    if result.out is not None:
        print(f"gold {args.split}: {result.written} new, {result.replaced} replaced -> {result.out}")
    if result.rejected_path is not None:
        print(f"bronze: {result.accepted} accepted, {result.rejected} rejected -> {result.rejected_path}")
    print(f"skipped: {result.cancelled} cancelled annotations, {result.unannotated} tasks without annotation")
    if result.kappa:
        kappas = ", ".join(f"{k} {'-' if v is None else f'{v:.3f}'}" for k, v in result.kappa.items())
        print(f"agreement on {result.double_annotated} doubly annotated sentences (Cohen's kappa): {kappas}")
    if result.double_verdicts:
        kappa = "-" if result.verdict_kappa is None else f"{result.verdict_kappa:.3f}"
        print(f"verdict agreement on {result.double_verdicts} doubly reviewed bronze sentences: "
              f"{result.verdict_agreement:.1%} agree, Cohen's kappa {kappa}")  # fmt: skip
    return 0


def _subcommand(
    sub: argparse._SubParsersAction, name: str, help: str, example: str, task: bool = True
) -> argparse.ArgumentParser:
    """A subcommand with its help as description, an example, defaults shown and (usually) ``--task``."""
    p = sub.add_parser(name, help=help, description=help, epilog=f"example: {example}", formatter_class=Formatter)
    if task:
        add_task_flag(p)
    return p


def _add_review(sub: argparse._SubParsersAction) -> None:
    """``clinsynth review export|import``: build gold with Label Studio."""
    review = sub.add_parser(
        "review",
        help="export sentences to review in Label Studio; import the annotations as gold",
        description="Human review with Label Studio: export tasks + labelling config, import the JSON export.",
        epilog="example: clinsynth review export --source corpus --n 200 --out tasks.json",
        formatter_class=Formatter,
    )
    actions = review.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _subcommand(
        actions,
        "export",
        "sentences most worth a human look, pre-annotated, as Label Studio tasks and a labelling config",
        "clinsynth review export --task my_task --source corpus --n 200 --out tasks.json",
    )
    export.add_argument(
        "--source",
        required=True,
        help="corpus, silver, bronze, or a JSONL / CSV / TXT file; a labelled JSONL (clinsynth label output) "
        "is pre-annotated with its labels",
    )
    export.add_argument("--n", type=int, required=True, help="sentences to export")
    export.add_argument("--strategy", choices=("uncertain", "random"), default="uncertain",
                        help="uncertain: closest to the classifier's thresholds, plus a random share")  # fmt: skip
    export.add_argument("--random-share", type=float, default=0.2, help="uncertain: share of random sentences")
    export.add_argument("--seed", type=int, default=0, help="seed of the random picks")
    export.add_argument("--out", default=None, help="tasks JSON (default: <task outputs>/review/<source>-tasks.json)")
    export.set_defaults(func=cmd_review_export)
    imp = _subcommand(
        actions,
        "import",
        "validate a Label Studio JSON export and write it as gold (bronze: accept/reject)",
        "clinsynth review import --task my_task --input export.json --split train",
    )
    imp.add_argument("--input", required=True, help="Label Studio export (JSON)")
    imp.add_argument("--split", choices=("train", "dev", "test"), default=None,
                     help="gold split to add the sentences to (not needed for a bronze review)")  # fmt: skip
    imp.add_argument("--out", default=None, help="gold file to write (default: the task's split file)")
    imp.add_argument("--annotator-kind", choices=("human", "model"), default="human",
                     help="who annotated: people, or a model (then name it with --annotator-model)")  # fmt: skip
    imp.add_argument("--annotator-model", default=None, help="the model that annotated (with --annotator-kind model)")
    imp.set_defaults(func=cmd_review_import)


def _delegated(name: str) -> tuple[Callable[..., argparse.ArgumentParser], Callable[[argparse.Namespace], int]]:
    """The parser and runner of a subcommand whose flags live with its module (shared with ``python -m``)."""
    import importlib

    module = importlib.import_module(DELEGATED_MODULES[name])
    return module.build_parser, module.run


DELEGATED_MODULES = {
    "label": "clinsynth.programs.label",
    "generate": "clinsynth.programs.generate",
    "compile": "clinsynth.programs.compile",
    "eval": "clinsynth.evals.run",
}
DELEGATED_HELP = {
    "label": "label sentences with the data-to-label program (silver)",
    "generate": "write bronze sentences per category (label-to-data)",
    "compile": "tune a program's prompt with a DSPy optimizer on gold",
    "eval": "run an eval suite: labeler, bronze-quality, augmentation (cross-validated), topup",
}


def build_parser() -> argparse.ArgumentParser:
    from clinsynth.model.onnx_path import BACKENDS, MAX_INT8_DEV_LOSS

    parser = argparse.ArgumentParser(
        prog="clinsynth",
        description="LLM-made training data (silver and bronze) for clinical sentence classifiers. "
        "Every subcommand has --help with an example.",
        epilog="example: clinsynth run --quick   (the main job in miniature on the bundled task)",
    )
    parser.add_argument("--version", action="version", version=f"clinsynth {clinsynth.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return _subcommand(sub, name, help, example, task=name != "init")

    init = add("init", "write a template task folder (taxonomy, gold stubs, config)", "clinsynth init my_task")
    init.add_argument("dir", help="folder to create")
    init.add_argument("--name", default=None, help="task id (default: from the folder name)")
    init.add_argument("--force", action="store_true", help="overwrite template files that exist")
    init.set_defaults(func=cmd_init)

    for name, help in DELEGATED_HELP.items():
        sub.add_parser(name, help=help, add_help=False)

    run = add("run", "the main job end to end: programs, silver, bronze, experiment, default model",
              "clinsynth run --quick --task my_task")  # fmt: skip
    run.add_argument("--quick", action="store_true", help="a small version of every step (minutes)")
    run.add_argument("--lm", default=None, help="'local' or a litellm model string for every role (default: task's)")
    run.add_argument("--api-base", default=None, help="base URL for an OpenAI-compatible server")
    run.add_argument("--regenerate", action="store_true", help="make new silver and bronze (resumable)")
    run.add_argument("--seeds", default=None, help="seeds of the experiment (default: the task's [experiment])")
    run.add_argument("--seed", type=int, default=0, help="seed for sampling and generation")
    run.add_argument("--out-dir", default=None, help="default: <task outputs>/run (or /quick)")
    add_budget_flags(run)  # the experiment's runs and the default model
    add_map_flags(run, unit="LM request", max_failures=None,
                  max_failures_help="failed records silver or bronze may leave before the job stops "
                  "with exit 1, ahead of training; they stay in the failures file (unset: 0; with --quick, "
                  "no limit)")  # fmt: skip
    add_cost_flags(run)
    run.set_defaults(func=cmd_run)

    train = add("train", "train the SetFit classifier on a mix of gold, silver and bronze",
                "clinsynth train --mix gold+bronze --out outputs/gb")  # fmt: skip
    train.add_argument("--mix", default="gold", help="parts joined by '+': gold, silver, silver-confident, bronze, ...")
    train.add_argument("--out", default=None, help="model directory (default: the task's default model)")
    add_budget_flags(train)
    train.add_argument("--seed", type=int, default=0, help="training seed")
    train.add_argument("--llm-check", action="store_true",
                       help="a hybrid (MIX+rules) whose predictions ask the task's labeller LM about each "
                            "label the student adds beyond the rule list (python -m evals.run llm-check)")  # fmt: skip
    train.add_argument("--silver", type=Path, default=None, help="silver file (default: the task's)")
    train.add_argument("--bronze", type=Path, default=None, help="bronze file (default: the task's)")
    train.add_argument("--silver-min-confidence", type=float, default=0.5, help="for silver-confident")
    train.set_defaults(func=cmd_train)

    predict = add("predict", "label sentences (or whole notes) of a JSONL / CSV / TXT file",
                  "clinsynth predict --input notes.txt --out labelled.jsonl")  # fmt: skip
    predict.add_argument("--input", default=None, help="JSONL (text, id?), CSV (text column) or TXT (a line each)")
    predict.add_argument("--out", default=None, help="output JSONL: id, text, labels, scores")
    predict.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                         help="label this sentence and print the labels (repeatable; no --input/--out)")
    predict.add_argument("--model", default=None, help="model directory (default: the task's default model)")
    predict.add_argument("--notes", action="store_true", help="each input item is a whole note: split it")
    predict.add_argument("--backend", choices=BACKENDS, default="auto",
                         help="auto: the ONNX export when usable (clinsynth export-onnx), else torch")  # fmt: skip
    predict.add_argument("--trust-pickle", action="store_true",
                         help="load a model folder holding pickle files (older models): only one you trust, "
                              "since unpickling runs code")  # fmt: skip
    add_engine_flags(predict)
    predict.set_defaults(func=cmd_predict)

    export_onnx = add("export-onnx", "export a trained classifier to ONNX for a faster predict ('scale' extra)",
                      "clinsynth export-onnx --quantize")  # fmt: skip
    export_onnx.add_argument("--model", default=None, help="model directory (default: the task's default model)")
    int8_rule = f"also an int8 graph: predict uses it if it loses <= {MAX_INT8_DEV_LOSS} micro and macro F1 on gold dev"
    export_onnx.add_argument("--quantize", action="store_true", help=int8_rule)
    export_onnx.set_defaults(func=cmd_export_onnx)

    export = add("export", "write the task's gold/silver/bronze as a datasets.DatasetDict or parquet",
                 "clinsynth export --format parquet --out outputs/export")  # fmt: skip
    export.add_argument("--out", default=None, help="output folder (default: <task outputs>/export-<format>)")
    export.add_argument("--format", choices=("datasets", "parquet"), default="datasets", help="output format")
    export.add_argument("--sources", default="gold,silver,bronze", help="comma-separated sources")
    export.set_defaults(func=cmd_export)

    corpus = add("corpus", "read the task's public corpus and print note/sentence counts", "clinsynth corpus")
    corpus.add_argument("--path", default=None, help="a corpus CSV(.gz) instead of the task's")
    corpus.set_defaults(func=cmd_corpus)

    check = add("check", "validate everything a run reads (config, taxonomy, gold, rules, data) in seconds",
                "clinsynth check --task tasks/sdoh")  # fmt: skip
    check.set_defaults(func=cmd_check)

    taxonomy = add("taxonomy", "validate the task's taxonomy and print its guideline text", "clinsynth taxonomy")
    taxonomy.add_argument("--path", default=None, help="a taxonomy file instead of the task's")
    taxonomy.set_defaults(func=cmd_taxonomy)

    _add_review(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED_HELP:
        make_parser, run = _delegated(argv[0])
        return run(make_parser(prog=f"clinsynth {argv[0]}").parse_args(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()

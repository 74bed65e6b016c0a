"""The ``clinsynth`` command: the main job (``run``) and a front door to every tool."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth.errors import ClinsynthError
from clinsynth.paths import OUTPUT_DIR


def cmd_run(args: argparse.Namespace) -> int:
    """The main job on embedded defaults: programs, silver, bronze, experiment, default model."""
    from clinsynth.pipeline import MainJob, RunConfig

    out_dir = Path(args.out_dir) if args.out_dir else OUTPUT_DIR / ("quick" if args.quick else "run")
    config = RunConfig(
        out_dir=out_dir,
        lm=args.lm,
        api_base=args.api_base,
        quick=args.quick,
        regenerate=args.regenerate,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        seed=args.seed,
    )
    return MainJob(config).run()


def cmd_train(args: argparse.Namespace) -> int:
    from clinsynth.classifier import TrainingBudget
    from clinsynth.mixes import MixSources
    from clinsynth.models import train_model
    from clinsynth.report import format_table
    from clinsynth.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    sources = MixSources(silver_min_confidence=args.silver_min_confidence)
    if args.silver:
        sources = MixSources(**{**sources.__dict__, "silver": Path(args.silver)})
    if args.bronze:
        sources = MixSources(**{**sources.__dict__, "bronze": Path(args.bronze)})
    budget = TrainingBudget(max_steps=args.max_steps, batch_size=args.batch_size)
    out = Path(args.out)
    print(f"training on {args.mix} ({budget.max_steps} contrastive steps, seed {args.seed}) -> {out}")
    classifier = train_model(args.mix, taxonomy, out, budget=budget, seed=args.seed, sources=sources)
    info = classifier.info
    rows = [[k, info.dev_scores[k], info.test_scores[k]] for k in ("micro_f1", "macro_f1", "binary_f1")]
    print(format_table(["metric", "gold dev", "gold test"], rows))
    n = sum(info.train_sources.values())
    print(f"trained in {info.train_seconds:.0f} s on {n} sentences; model card: {out / 'README.md'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from clinsynth.classifier import SignsClassifier
    from clinsynth.models import ensure_default_model
    from clinsynth.predict import predict_file
    from clinsynth.taxonomy import load_taxonomy

    # A model knows its own labels; the taxonomy is only needed to train the default one.
    model_dir = Path(args.model) if args.model else ensure_default_model(load_taxonomy())
    classifier = SignsClassifier.load(model_dir)
    result = predict_file(classifier, args.input, args.out, notes=args.notes)
    rate = result["sentences"] / result["seconds"] if result["seconds"] else 0.0
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["label_counts"].items(), key=lambda kv: -kv[1]))
    print(f"{result['sentences']} sentences -> {args.out} ({rate:.0f} sentences/s; model {model_dir})")
    print(f"labels: {counts or '-'}")
    return 0


def cmd_corpus(args: argparse.Namespace) -> int:
    from clinsynth.corpus import DEFAULT_CORPUS, corpus_stats

    path = Path(args.path) if args.path else DEFAULT_CORPUS
    stats = corpus_stats(path)
    print(f"{path}: {stats['notes']} notes (deduplicated by transcription), {stats['sentences']} sentences")
    return 0


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from clinsynth.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    taxonomy = load_taxonomy(args.path or DEFAULT_TAXONOMY)
    print(taxonomy.guideline_text)
    return 0


def cmd_label(argv: list[str]) -> int:
    from programs.label import main as label_main

    return label_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinsynth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the main job end to end on the embedded defaults")
    run.add_argument("--quick", action="store_true", help="a small version of every step (CI)")
    run.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    run.add_argument("--api-base", default=None)
    run.add_argument("--regenerate", action="store_true", help="make new silver and bronze with --lm (resumable)")
    run.add_argument("--seeds", default="0,1,2", help="seeds of the experiment")
    run.add_argument("--seed", type=int, default=0, help="seed for sampling and generation")
    run.add_argument("--out-dir", default=None, help="default: outputs/run (outputs/quick with --quick)")
    run.set_defaults(func=cmd_run)

    train = sub.add_parser("train", help="train the SetFit classifier on a mix, e.g. --mix gold+bronze")
    train.add_argument("--mix", default="gold", help="parts joined by '+': gold, silver, silver-confident, bronze, ...")
    train.add_argument("--out", default=str(OUTPUT_DIR / "model"), help="model directory (default: the default model)")
    train.add_argument("--max-steps", type=int, default=40, help="contrastive training steps")
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--silver", default=None, help="silver file (default data/silver/silver.jsonl)")
    train.add_argument("--bronze", default=None, help="bronze file (default data/bronze/bronze.jsonl)")
    train.add_argument("--silver-min-confidence", type=float, default=0.5, help="for silver-confident")
    train.set_defaults(func=cmd_train)

    predict = sub.add_parser("predict", help="label sentences (or --notes) of a JSONL / CSV / TXT file")
    predict.add_argument("--input", required=True, help="JSONL (text, id?), CSV (text column) or TXT (a line each)")
    predict.add_argument("--out", required=True, help="output JSONL: id, text, labels, scores")
    predict.add_argument("--model", default=None, help="model directory (default: the main job's model)")
    predict.add_argument("--notes", action="store_true", help="each input item is a whole note: split it")
    predict.set_defaults(func=cmd_predict)

    corpus = sub.add_parser("corpus", help="read the public corpus and print note/sentence counts")
    corpus.add_argument("--path", default=None)
    corpus.set_defaults(func=cmd_corpus)

    taxonomy = sub.add_parser("taxonomy", help="validate a taxonomy file and print its guideline text")
    taxonomy.add_argument("--path", default=None)
    taxonomy.set_defaults(func=cmd_taxonomy)

    sub.add_parser("label", help="label sentences (same options as python -m programs.label)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "label":
        return cmd_label(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

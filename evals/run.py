"""``python -m evals.run SUITE``: run an eval suite and write its report under ``reports/``."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth.errors import ClinsynthError


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m evals.run", description=__doc__)
    sub = parser.add_subparsers(dest="suite", required=True)
    lab = sub.add_parser("labeler", help="data-to-label quality on gold (zero-shot vs compiled)")
    lab.add_argument("--lm", default="local")
    lab.add_argument("--api-base", default=None)
    lab.add_argument("--split", default="test", choices=["train", "dev", "test"])
    lab.add_argument("--limit", type=int, default=None, help="first N sentences of the split")
    lab.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="program to compare (repeatable; PATH 'none' = zero-shot); default: zero-shot and "
        "compiled/data_to_label.<lm>.json if present",
    )
    lab.add_argument("--threads", type=int, default=1, help="parallel requests")
    lab.add_argument("--out-dir", type=Path, default=Path("reports"))
    bq = sub.add_parser("bronze-quality", help="bronze set: filter counts, diversity, distance to gold, leakage")
    bq.add_argument("--bronze", type=Path, default=Path("data/bronze/bronze.jsonl"))
    bq.add_argument("--taxonomy", type=Path, default=None)
    bq.add_argument("--coverage-cosine", type=float, default=0.6)
    bq.add_argument("--out-dir", type=Path, default=Path("reports"))
    aug = sub.add_parser("augmentation", help="SetFit on gold / +silver / +bronze mixes, seeds, baselines")
    aug.add_argument("--mixes", default=None, help="comma-separated mixes (default: all main, reference, ablation)")
    aug.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    aug.add_argument("--max-steps", type=int, default=None, help="contrastive steps per training")
    aug.add_argument("--train-limit", type=int, default=None, help="first N of each part of a mix (quick runs)")
    aug.add_argument("--silver-min-confidence", type=float, default=0.5)
    aug.add_argument("--silver", type=Path, default=None)
    aug.add_argument("--bronze", type=Path, default=None)
    aug.add_argument("--no-baselines", action="store_true")
    aug.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (resume)")
    aug.add_argument("--out-dir", type=Path, default=Path("reports"))
    args = parser.parse_args(argv)
    command = "python -m evals.run " + shlex.join(argv)
    try:
        if args.suite == "labeler":
            from evals import labeler

            programs: dict[str, Path | None] | None = None
            if args.program:
                programs = {}
                for spec in args.program:
                    name, _, path = spec.partition("=")
                    programs[name] = None if path.lower() in ("", "none") else Path(path)
            results = labeler.run(
                args.lm, args.api_base, args.split, args.limit, programs, args.out_dir, command, args.threads
            )
            for r in results:
                print(
                    f"{r.solver}: micro F1 {r.scores['micro_f1']:.3f}, binary F1 {r.scores['binary_f1']:.3f}, "
                    f"unparseable {r.failed}"
                )
            print(f"report: {args.out_dir / 'labeler.md'}")
        elif args.suite == "bronze-quality":
            from clinsynth.taxonomy import DEFAULT_TAXONOMY, load_taxonomy
            from evals import bronze_quality

            taxonomy = load_taxonomy(args.taxonomy or DEFAULT_TAXONOMY)
            results = bronze_quality.run(
                args.bronze, taxonomy, args.out_dir, command, coverage_cosine=args.coverage_cosine
            )
            print(
                f"{results['n_bronze']} bronze sentences; leaks {len(results['leakage']['leaks'])}; "
                f"PHI {len(results['phi'])}; distinct-2 {results['overall']['distinct_2']}"
            )
            print(f"report: {args.out_dir / 'bronze.md'}")
        elif args.suite == "augmentation":
            from evals import augmentation

            summary = augmentation.run(augmentation_experiment(args), _taxonomy(), args.out_dir, command)
            print(f"report: {args.out_dir / 'augmentation.md'} (best mix on dev: {augmentation.best_mix(summary)})")
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _taxonomy():
    from clinsynth.taxonomy import load_taxonomy

    return load_taxonomy()


def augmentation_experiment(args: argparse.Namespace):
    """The experiment the CLI options describe (defaults: every mix, seeds 0-2, default budget)."""
    from dataclasses import replace

    from clinsynth.classifier import TrainingBudget
    from clinsynth.mixes import MixSources
    from evals.augmentation import DEFAULT_MIXES, Experiment

    sources = MixSources(silver_min_confidence=args.silver_min_confidence)
    if args.silver:
        sources = replace(sources, silver=args.silver)
    if args.bronze:
        sources = replace(sources, bronze=args.bronze)
    budget = TrainingBudget() if args.max_steps is None else TrainingBudget(max_steps=args.max_steps)
    experiment = Experiment(
        mixes=tuple(m.strip() for m in args.mixes.split(",")) if args.mixes else DEFAULT_MIXES,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        budget=budget,
        sources=sources,
        train_limit=args.train_limit,
        baselines=not args.no_baselines,
    )
    if args.work_dir:
        experiment.work_dir = args.work_dir
    return experiment


if __name__ == "__main__":
    sys.exit(main())

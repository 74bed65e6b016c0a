"""``python -m evals.run SUITE``: run an eval suite on a task and write its report.

Suites: ``labeler`` (data-to-label quality on gold, zero-shot vs compiled), ``bronze-quality``
(filters, diversity, distance to gold, leakage), ``augmentation`` (alias ``cv``: what silver
and bronze add to gold, by grouped cross-validation over gold train + dev with seeds and
paired confidence intervals, then the default model on gold test), ``topup`` (what a bronze top-up added, paired),
``combiners`` (ways to combine the rule list with the student, on the experiment's finished runs),
``llm-check`` (the hybrid with the labeller LM's yes/no on each category the student adds beyond the rules),
``gold-curve`` (what more gold buys: the mixes with a share of the gold training notes and with all, paired),
``compare`` (what one mix adds over another: both cross-validated, students and hybrids paired),
``final-seeds`` (the default model's gold test line over training seeds: how far one training moves),
``near-copies`` (the hybrid's cross-validated lead over the rule list without held-out sentences that have a
near-copy in what their fold trained on).
Reports go to the task's reports folder.

Example: python -m evals.run augmentation --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from clinsynth.evals.cv import DEFAULT_FOLDS
from clinsynth.evals.topup import MIX as TOPUP_MIX

from clinsynth.data.task import LMSpec, load_task
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.cliargs import add_budget_flags, add_task_flag, budget_from_args, interrupted

Formatter = argparse.ArgumentDefaultsHelpFormatter


def build_parser(prog: str = "python -m evals.run") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[1].replace("\n", " "),
        epilog="example: " + __doc__.rsplit("Example: ", 1)[1].strip(),
    )
    sub = parser.add_subparsers(dest="suite", required=True)

    def add(name: str, help: str, aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, formatter_class=Formatter, aliases=list(aliases))
        add_task_flag(p)
        p.add_argument("--out-dir", type=Path, default=None, help="report folder (default: the task's reports)")
        return p

    lab = add("labeler", "data-to-label quality on gold (zero-shot vs compiled)")
    lab.add_argument("--lm", default=None, help="'local' or a litellm model string (default: the task's labeller)")
    lab.add_argument("--api-base", default=None, help="base URL for an OpenAI-compatible server")
    lab.add_argument("--split", default="test", choices=["train", "dev", "test"], help="gold split")
    lab.add_argument("--limit", type=int, default=None, help="first N sentences of the split")
    lab.add_argument(
        "--program",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="program to compare (repeatable; PATH 'none' = zero-shot); default: zero-shot and the task's "
        "compiled labeller for the LM and its variants (data_to_label.<variant>.<lm>.json)",
    )
    lab.add_argument("--threads", type=int, default=1, help="parallel requests")
    bq = add("bronze-quality", "bronze set: filter counts, diversity, distance to gold, leakage")
    bq.add_argument("--bronze", type=Path, default=None, help="bronze file (default: the task's)")
    bq.add_argument("--coverage-cosine", type=float, default=0.6, help="a gold sentence is covered at this cosine")
    cv = add("augmentation", "grouped k-fold CV by note over gold train+dev: mixes x seeds, paired CIs vs gold, "
             "then gold test", aliases=("cv",))  # fmt: skip
    cv.add_argument("--mixes", default=None, help="comma-separated mixes, e.g. gold+bronze:25 (default: the task's "
                    "[experiment] mixes, else gold, +bronze, +silver-agree; +silver-ws: silver relabelled by weak "
                    "supervision)")  # fmt: skip
    cv.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    cv.add_argument("--folds", type=int, default=None,
                    help=f"folds by note (default: the task's, else {DEFAULT_FOLDS})")  # fmt: skip
    add_budget_flags(cv)
    cv.add_argument("--no-baselines", action="store_true", help="mixes only")
    cv.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    top = add("topup", "what another version of the bronze set changes (a top-up, a cleaned set): --mix "
              "cross-validated with the task's bronze and with --bronze, paired")  # fmt: skip
    top.add_argument("--bronze", type=Path, required=True, help="the other bronze file (programs.generate --top-up, "
                     "or a copy cleaned by --drop-label-issues)")  # fmt: skip
    top.add_argument("--mix", default=TOPUP_MIX, help="the mix cross-validated on both sides (it needs a bronze part)")
    top.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    top.add_argument("--folds", type=int, default=None,
                     help=f"folds by note (default: the task's, else {DEFAULT_FOLDS})")  # fmt: skip
    top.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    curve = add("gold-curve", "what more gold buys: the task's mixes cross-validated with --share of each fold's "
                "gold training notes and with all of them, paired")  # fmt: skip
    curve.add_argument("--share", type=float, default=None, help="share of each fold's gold training notes "
                       "(default: 0.5)")  # fmt: skip
    curve.add_argument("--mixes", default=None, help="comma-separated mixes (default: the task's)")
    curve.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    curve.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    cmp = add("compare", "what one mix adds over another: both cross-validated on the same folds and seeds, "
              "students and their hybrids with the rule list paired")  # fmt: skip
    cmp.add_argument("--new", required=True, help="the mix to measure, e.g. gold+whole-notes+bronze")
    cmp.add_argument("--base", required=True, help="the mix it is compared with, e.g. gold+bronze")
    cmp.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    cmp.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    comb = add("combiners", "ways to combine the rule list with the student, scored on the experiment's finished "
               "fold runs (nothing is trained)")  # fmt: skip
    comb.add_argument("--mixes", default=None, help="comma-separated mixes with finished runs (default: the task's)")
    comb.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    comb.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    check = add("llm-check", "the hybrid with the labeller LM asked, per sentence and category, about what the "
                "student adds beyond the rule list: all checked, and checked where it helped on the other folds "
                "(on the experiment's finished fold runs; nothing is trained)")  # fmt: skip
    check.add_argument("--lm", default=None, help="'local' or a litellm model string (default: the task's labeller)")
    check.add_argument("--api-base", default=None, help="base URL for an OpenAI-compatible server")
    check.add_argument("--threads", type=int, default=1, help="parallel requests")
    check.add_argument("--mixes", default=None, help="comma-separated mixes with finished runs (default: the task's)")
    check.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    check.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    check.add_argument("--neighbours", type=int, default=0,
                       help="show the LLM this many similar annotated pool sentences per side beside each question "
                       "(a side report: needs --out-dir; saved models ask without them)")  # fmt: skip
    whole = add("whole-view", "cross-validation scored on the pool's whole notes (every sentence, mostly NONE) "
                "beside the enriched pool: students, hybrids and the rule list, paired CIs; a finished run without "
                "whole-note scores is retrained for them")  # fmt: skip
    whole.add_argument("--mixes", default=None, help="comma-separated mixes; with two or more, the first is paired "
                       "with the second (default: the task's)")  # fmt: skip
    whole.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    whole.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    final = add("final-seeds", "the default mix trained as the default model once per seed, each scored on gold "
                "test and whole test notes beside the rule list (measures; chooses nothing)")  # fmt: skip
    final.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    final.add_argument("--models-dir", type=Path, default=None,
                       help="where the seeds' models go (default: outputs/<task>/final-seeds)")  # fmt: skip
    near = add("near-copies", "the hybrid vs the rule list out of fold, on all sentences, on those "
               "without a near-copy in what their fold trained on, and on the near-copies alone "
               "(nothing is trained)")  # fmt: skip
    near.add_argument("--mixes", default=None, help="comma-separated mixes with finished runs (default: the task's)")
    near.add_argument("--seeds", default=None, help="comma-separated training seeds (default: the task's, else 0,1,2)")
    near.add_argument("--cutoff", type=float, default=None, help="character n-gram cosine of a near-copy "
                      "(default: evals.near_copies.CUTOFF)")  # fmt: skip
    near.add_argument("--work-dir", type=Path, default=None, help="where finished runs are kept (default: the task's)")
    return parser


def seeds_arg(args: argparse.Namespace) -> tuple[int, ...] | None:
    """``--seeds 0,1,2`` as a tuple; None (the task's seeds) when not given."""
    return tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None


def mixes_arg(args: argparse.Namespace) -> tuple[str, ...] | None:
    """``--mixes`` as systems (``evals.cv.parse_systems``); None (the task's mixes) when not given."""
    from clinsynth.evals.cv import parse_systems

    return parse_systems(args.mixes) if args.mixes else None


def run(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    command = "python -m evals.run " + shlex.join(argv if argv is not None else sys.argv[1:])
    try:
        task = load_task(args.task)
        out_dir = args.out_dir or task.reports_dir
        if args.suite == "labeler":
            from clinsynth.evals import labeler

            programs: dict[str, Path | None] | None = None
            if args.program:
                programs = {}
                for spec in args.program:
                    name, _, path = spec.partition("=")
                    programs[name] = None if path.lower() in ("", "none") else Path(path)
            lm = LMSpec(args.lm, args.api_base) if args.lm else None
            results = labeler.run(task, lm, args.split, args.limit, programs, out_dir, command, args.threads)
            for r in results:
                print(
                    f"{r.solver}: micro F1 {r.scores['micro_f1']:.3f}, binary F1 {r.scores['binary_f1']:.3f}, "
                    f"unparseable {r.failed}"
                )
            print(f"report: {out_dir / 'labeler.md'}")
        elif args.suite == "bronze-quality":
            from clinsynth.evals import bronze_quality

            from clinsynth.data.gold import SPLITS

            results = bronze_quality.run(
                args.bronze or task.bronze,
                task.taxonomy,
                out_dir,
                command,
                gold_paths=[task.split_path(s) for s in SPLITS],
                coverage_cosine=args.coverage_cosine,
            )
            print(
                f"{results['n_bronze']} bronze sentences; leaks {len(results['leakage']['leaks'])}; "
                f"PHI {len(results['phi'])}; distinct-2 {results['overall']['distinct_2']}"
            )
            print(f"report: {out_dir / 'bronze.md'}")
        elif args.suite in ("augmentation", "cv"):
            from clinsynth.evals import cv, experiment

            settings = cv.CVSettings.for_task(
                task,
                mixes=mixes_arg(args),
                seeds=seeds_arg(args),
                folds=args.folds,
                budget=budget_from_args(args),
                baselines=not args.no_baselines,
            )
            report, _ = experiment.cross_validate_task(task, settings, Path(out_dir), command, work_dir=args.work_dir)
            print(f"report: {report}")
        elif args.suite == "topup":
            from clinsynth.evals import cv, topup

            settings = cv.CVSettings.for_task(task, seeds=seeds_arg(args), folds=args.folds)
            report, _ = topup.compare_bronze(task, settings, args.bronze, Path(out_dir), command,
                                             work_dir=args.work_dir, mix=args.mix)  # fmt: skip
            print(f"report: {report}")
        elif args.suite == "gold-curve":
            from clinsynth.evals import cv, gold_curve

            settings = cv.CVSettings.for_task(task, mixes=mixes_arg(args), seeds=seeds_arg(args))
            share = gold_curve.DEFAULT_SHARE if args.share is None else args.share
            report, _ = gold_curve.compare_shares(task, settings, share, Path(out_dir), command,
                                                  work_dir=args.work_dir)  # fmt: skip
            print(f"report: {report}")
        elif args.suite == "compare":
            from clinsynth.evals import compare, cv

            settings = cv.CVSettings.for_task(task, mixes=(args.new, args.base), seeds=seeds_arg(args))
            report, _ = compare.compare_mixes(task, settings, args.new, args.base, Path(out_dir), command,
                                              work_dir=args.work_dir)  # fmt: skip
            print(f"report: {report}")
        elif args.suite == "whole-view":
            from clinsynth.evals import cv, whole_view

            settings = cv.CVSettings.for_task(task, mixes=mixes_arg(args), seeds=seeds_arg(args))
            report, _ = whole_view.whole_view(task, settings, Path(out_dir), command, work_dir=args.work_dir)
            print(f"report: {report}")
        elif args.suite == "combiners":
            from clinsynth.evals import combiners, cv

            settings = cv.CVSettings.for_task(task, mixes=mixes_arg(args), seeds=seeds_arg(args))
            report, _ = combiners.write(task, settings, Path(out_dir), command, work_dir=args.work_dir)
            print(f"report: {report}")
        elif args.suite == "llm-check":
            from clinsynth.evals import cv, llm_check

            if args.neighbours and Path(out_dir).resolve() == task.reports_dir.resolve():
                raise ClinsynthError("--neighbours writes a side report (saved models ask without neighbours, and "
                                     f"{task.reports_dir / 'llm-check.json'} chooses their check): pass --out-dir")
            settings = cv.CVSettings.for_task(task, mixes=mixes_arg(args), seeds=seeds_arg(args))
            lm = LMSpec(args.lm, args.api_base) if args.lm else None
            report, _ = llm_check.write(task, settings, Path(out_dir), command, lm=lm, threads=args.threads,
                                        work_dir=args.work_dir, neighbours=args.neighbours)  # fmt: skip
            print(f"report: {report}")
        elif args.suite == "final-seeds":
            from clinsynth.evals import final_seeds

            report, _ = final_seeds.write(task, seeds_arg(args) or final_seeds.DEFAULT_SEEDS, Path(out_dir), command,
                                          models_dir=args.models_dir)  # fmt: skip
            print(f"report: {report}")
        elif args.suite == "near-copies":
            from clinsynth.evals import cv, near_copies

            settings = cv.CVSettings.for_task(task, mixes=mixes_arg(args), seeds=seeds_arg(args))
            cutoff = near_copies.CUTOFF if args.cutoff is None else args.cutoff
            report, _ = near_copies.write(task, settings, Path(out_dir), command, cutoff, work_dir=args.work_dir)
            print(f"report: {report}")
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run(build_parser().parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())

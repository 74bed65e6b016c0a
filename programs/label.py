"""``python -m programs.label``: label corpus sentences (or a file's) with DataToLabel.

Uses the task's compiled program for the LM (``tasks/ad_signs/compiled/data_to_label.<lm>.json``) when
there is one. Writes silver records with provenance and confidence to ``--out`` (JSONL),
one flushed line per record, then the same records as parquet (``<out>.parquet``). An
existing output is resumed: ids already there are skipped, never duplicated. Records
whose LM call still fails after retries go to ``<out>.failures.jsonl`` and are retried on
the next run. Exit status: 0 done, 1 more records failed than ``--max-failures``, 2 the
run could not go on (bad input or flags, or an endpoint that refuses or does not answer).
The work itself is ``clinsynth.programs.steps.label.label_sentences``.

``--silver`` makes the task's own silver set with the settings in its ``clinsynth.toml``.

Example: python -m programs.label --prefilter --limit 200 --out outputs/silver.jsonl
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.task import load_task
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.cliargs import (
    add_cost_flags,
    add_engine_flags,
    add_lm_flags,
    add_map_flags,
    add_task_flag,
    engine_from_args,
    interrupted,
    lm_override,
    map_settings,
    print_plan,
)


def build_parser(prog: str = "python -m programs.label") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog="example: " + __doc__.rsplit("Example: ", 1)[1].strip(),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_task_flag(p)
    add_lm_flags(p, "labeler")
    p.add_argument("--input", type=Path, default=None, help="JSONL (text, id?), CSV (text column) or TXT")
    p.add_argument("--out", type=Path, default=None, help="output JSONL (resumed if it exists); needed unless --silver")
    p.add_argument(
        "--silver",
        action="store_true",
        help="make the task's silver set: its corpus with its [label] settings (prefilter, limit, pool), "
        "into its silver path; flags given override the settings",
    )
    p.add_argument("--limit", type=int, default=None, help="label at most N sentences")
    p.add_argument("--program", type=Path, default=None, help="compiled program JSON (default: the task's for --lm)")
    p.add_argument("--zero-shot", action="store_true", help="ignore compiled programs")
    p.add_argument("--samples", type=int, default=1, help="k > 1: confidence = agreement of k answers (k x cost)")
    p.add_argument("--prefilter", action="store_true", help="corpus: pick sentences similar to the categories")
    p.add_argument(
        "--negatives", type=float, default=None, help="prefilter: share of random other sentences (default: 0.2)"
    )
    p.add_argument("--pool", type=int, default=None, help="prefilter: score a random pool of N sentences only")
    p.add_argument(
        "--sensitivity",
        choices=[s.value for s in Sensitivity],
        default=None,
        help="sensitivity of --input (default: private; gold is always private)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed (recorded in provenance)")
    add_map_flags(p, "sentence")
    add_cost_flags(p)
    add_engine_flags(p)
    p.add_argument("--no-parquet", action="store_true", help="do not write <out>.parquet")
    return p


def run(args: argparse.Namespace) -> int:
    from clinsynth.programs.steps.label import LabelConfig, label_sentences, plan_labelling

    from clinsynth.llm.meter import describe_usage

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        task = load_task(args.task)
        lm = lm_override(args, task.lm("labeler"))
        given = {k: getattr(args, k) for k in ("limit", "negatives", "pool") if getattr(args, k) is not None}
        settings = dict(
            program=args.program,
            zero_shot=args.zero_shot,
            samples=args.samples,
            seed=args.seed,
            lm=lm,
            map=map_settings(args),
            ray=engine_from_args(args),
            parquet=not args.no_parquet,
            **given,
        )
        if args.silver:
            if args.input is not None:
                raise ClinsynthError("--silver labels the task's corpus; leave out --input")
            config = LabelConfig.for_silver(task, **settings)
            args.out = args.out or task.silver
        else:
            if args.out is None and not args.dry_run:
                raise ClinsynthError("--out is required (or --silver for the task's silver set)")
            config = LabelConfig(
                input=args.input,
                sensitivity=Sensitivity(args.sensitivity) if args.sensitivity else None,
                prefilter=args.prefilter,
                **settings,
            )
        if args.dry_run:
            return print_plan(plan_labelling(task, config, args.out))
        result = label_sentences(task, config, args.out)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
    if result.nothing_to_do:
        print(f"{args.out}: all {result.skipped} sentences already labelled; nothing to do")
        return 0
    print(f"program: {result.program or 'zero-shot'}; lm: {result.lm}", file=sys.stderr)
    print(f"{args.out}: labelled {result.labelled}, already done {result.skipped}, failed {result.failed}")
    for name, n in result.label_counts.most_common():
        print(f"  {name:<28} {n}")
    print(describe_usage(result.usage))
    if result.failed:
        print(f"{result.failed} sentences failed (see {result.failures_path}); rerun to retry them", file=sys.stderr)
    return 1 if result.failed > config.map.max_failures else 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

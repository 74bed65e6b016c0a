"""``python -m programs.generate``: write bronze sentences per category with LabelToData, then filter them.

Plans generation calls per target (each category, NONE hard negatives, two-category
sentences), filters what comes back (PHI, duplicates, leakage against the task's gold, a
round trip through the labeller) and tops up short targets for up to ``--max-rounds``.
Resumable call by call and sentence by sentence from the files next to ``--out``
(``<out>.calls.jsonl``, ``<out>.roundtrip.jsonl``, ``<out>.failures.jsonl``); ``<out>``,
``<out>.dropped.jsonl`` and ``<out>.report.json`` are rewritten at the end of each run.
Exit status: 0 done, 1 more calls and round trips failed than ``--max-failures``, 2 the
run could not go on (bad flags, an endpoint that refuses or does not answer, or
``--max-cost`` reached). The work itself is ``clinsynth.programs.steps.bronze.generate_bronze``;
``--dry-run`` prints its cost plan instead (``clinsynth.programs.steps.bronze.plan_bronze``).

``--refilter-subject`` applies the guideline's subject filter (a positive label whose every cue
is about someone else, by the task's rule list) to an existing set without any LM call.
``--drop-label-issues`` drops the sentences whose label the rest of the set contradicts
(confident learning with cleanlab on MiniLM embeddings; no LM call, no gold read); later
generation runs keep them out (they are read back from ``<out>.dropped.jsonl``).

With ``--top-up N`` the categories weakest on dev (out of fold) get N more kept sentences.

Example: python -m programs.generate --per-category 50 --out outputs/bronze.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from clinsynth.programs.steps.bronze import (
    GENERATION_TEMPERATURE,
    PROGRAM_NAME,
    ROUND_TRIP_POLICIES,
    BronzeConfig,
    BronzeResult,
    drop_label_issues,
    generate_bronze,
    plan_bronze,
    refilter_subject,
    weakest_categories,
)

from clinsynth.data import bronze_filters as bf
from clinsynth.data.task import Task, load_task
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.cliargs import (
    add_cost_flags,
    add_lm_flags,
    add_map_flags,
    add_task_flag,
    interrupted,
    lm_override,
    map_settings,
    print_plan,
)

# GENERATION_TEMPERATURE and PROGRAM_NAME stay importable from here (programs.compile_generator uses the first).
__all__ = [
    "GENERATION_TEMPERATURE",
    "PROGRAM_NAME",
    "build_parser",
    "config_from_args",
    "main",
    "run",
]

DEFAULTS = BronzeConfig()


# Flags of BronzeConfig settings: unset, they take the task's [generate] value, else BronzeConfig's.
SETTINGS = ("per_category", "per_call", "overgenerate", "max_rounds", "round_trip", "near_duplicate", "seed",
            "shorthand_share")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Settings show BronzeConfig's default (a task's [generate] table may change it); unset others say in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.dest in SETTINGS:
            return f"{action.help} (default: the task's [generate] value, else {getattr(DEFAULTS, action.dest)})"
        if action.default is None or action.default is False:
            return action.help or ""
        return super()._get_help_string(action) or ""


def build_parser(prog: str = "python -m programs.generate") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0],
        epilog="example: " + __doc__.rsplit("Example: ", 1)[1].strip(),
        formatter_class=HelpFormatter,
    )
    add_task_flag(p)
    add_lm_flags(p, "generator")
    p.add_argument(
        "--out", type=Path, default=None, help="kept records (JSONL), side files next to it (default: the task's)"
    )
    p.add_argument("--refilter-subject", action="store_true",
                   help="apply the subject filter (the task's rule list) to an existing bronze set, no LM call")
    p.add_argument("--drop-label-issues", action="store_true",
                   help="drop sentences whose label the rest of the set contradicts (cleanlab), no LM call")
    p.add_argument("--per-category", type=int, default=None, help="kept sentences wanted per category")
    p.add_argument("--negatives", type=int, default=None, help="kept NONE hard negatives (default: --per-category)")
    p.add_argument(
        "--multi-label", type=int, default=None, help="kept two-category sentences (default: 1/5 of --per-category)"
    )
    p.add_argument("--categories", default=None, help="comma-separated subset of categories (default: all)")
    p.add_argument(
        "--top-up",
        type=int,
        default=None,
        metavar="N",
        help="N more kept sentences for each of the --weakest categories (lowest out-of-fold F1 in the task's "
        "report, else lowest dev F1 of its default model); the set's other sentences stay",
    )
    p.add_argument("--weakest", type=int, default=3, help="with --top-up: how many of the weakest categories")
    p.add_argument("--per-call", type=int, default=None, help="sentences asked per LM call")
    p.add_argument("--overgenerate", type=float, default=None, help="candidates planned per missing sentence")
    p.add_argument("--max-rounds", type=int, default=None, help="top-up rounds for targets short of their quota")
    p.add_argument(
        "--round-trip",
        choices=ROUND_TRIP_POLICIES,
        default=None,
        help="what to do with sentences the labeller labels otherwise (drop, relabel, keep); off: no round trip",
    )
    p.add_argument(
        "--near-duplicate",
        type=float,
        default=None,
        help="cosine at or above which a sentence is dropped as a near duplicate",
    )
    p.add_argument("--program", type=Path, default=None, help="compiled LabelToData (default: the task's for the LM)")
    p.add_argument(
        "--labeler", type=Path, default=None, help="compiled DataToLabel for the round trip (default: the task's)"
    )
    p.add_argument("--zero-shot", action="store_true", help="ignore compiled programs")
    p.add_argument("--taxonomy", type=Path, default=None, help="taxonomy YAML (default: the task's)")
    p.add_argument("--seed", type=int, default=None, help="seed of the call plans (recorded in provenance)")
    p.add_argument("--shorthand-share", type=float, default=None,
                   help="chance that a category's call asks for one of its shorthand forms (taxonomy "
                   "generation.shorthand); 1 for a top-up that must cover note shorthand")
    add_map_flags(p, "call and per round trip")
    add_cost_flags(p)
    return p


def config_from_args(args: argparse.Namespace, task: Task) -> BronzeConfig:
    """Flags to a BronzeConfig: flags given, then the task's [generate] table, then BronzeConfig's defaults."""
    given = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    return BronzeConfig.for_task(
        task,
        **given,
        negatives=args.negatives,
        multi_label=args.multi_label,
        categories=tuple(c.strip() for c in args.categories.split(",") if c.strip()) if args.categories else None,
        lm=lm_override(args, task.lm("generator")),
        program=args.program,
        labeler=args.labeler,
        zero_shot=args.zero_shot,
        map=map_settings(args),
        top_up=top_up_from_args(args, task),
    )


def top_up_from_args(args: argparse.Namespace, task: Task) -> dict[str, int]:
    if not args.top_up:
        return {}
    weakest, source = weakest_categories(task, args.weakest)
    print(f"top-up: +{args.top_up} for " + ", ".join(f"{c} (F1 {f:.3f})" for c, f in weakest) + f"; from {source}")
    return {c: args.top_up for c, _ in weakest}


def print_result(result: BronzeResult) -> None:
    from clinsynth.llm.meter import describe_usage
    from clinsynth.report import format_table

    print(f"generator: {result.generator_program}; round trip: {result.labeler_program or 'off'}; lm: {result.lm}")
    print(format_table(*result.table))
    print(describe_usage(result.usage))
    # No out when nothing was kept or dropped: say so rather than print a path not written.
    where = result.out if result.out is not None else "no sentence kept or dropped, nothing written"
    print(
        f"{where}: {len(result.kept)} kept; failed calls {result.failed_calls}, "
        f"failed round trips {result.failed_round_trips}; report {result.report_path}"
    )
    if result.failures_path is not None:
        print(f"failures in {result.failures_path}; rerun to retry them", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the step for parsed flags (``clinsynth generate`` parses with ``build_parser`` and calls this)."""
    try:
        task = load_task(args.task)
        if args.taxonomy is not None:
            task = dataclasses.replace(task, taxonomy_path=args.taxonomy.resolve())
        config = config_from_args(args, task)
        if args.dry_run:
            return print_plan(plan_bronze(task, config, args.out))
        if args.refilter_subject or args.drop_label_issues:
            # Steps on an existing set, no LM call: what they take out goes to the dropped file.
            out = args.out or task.bronze
            if args.refilter_subject:
                gone, filter_name = refilter_subject(task, out), bf.SUBJECT
            else:
                gone, filter_name = drop_label_issues(out, task.taxonomy.names), bf.LABEL_ISSUE
            for row in gone:
                print(f"  dropped ({row['detail']}; {', '.join(row['labels']) or 'NONE'}): {row['text']}")
            print(f"{len(gone)} sentences left {out} for {out.name}.dropped.jsonl (filter {filter_name})")
            return 0
        result = generate_bronze(task, config, args.out)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
    print_result(result)
    failed = result.failed_calls + result.failed_round_trips
    return 1 if failed > config.map.max_failures else 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

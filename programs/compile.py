"""``python -m programs.compile``: tune a program's prompt on gold train, score it on gold dev.

Prints the dev scores before and after and writes ``<task compiled dir>/<program>.<lm>.json``
(DSPy state-only JSON plus metadata: DSPy version, LM and endpoint, optimizer, seed, data,
scores, where the demos came from). The work is ``clinsynth.programs.steps.compile.compile_program``;
the optimizers are listed in ``programs.optimizers``.

``--program label-to-data`` compiles the generator instead (``bootstrap``, ``random-search``
or ``mipro``) against a metric of round-trip agreement, diversity and closeness to gold
dev, reported per gold dev category; see ``programs.compile_generator``.

Example: python -m programs.compile --program data-to-label --optimizer labeled-fewshot --dev-limit 60
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from clinsynth.programs.optimizers import OPTIMIZERS
from clinsynth.programs.steps.compile import PROGRAMS, CompileConfig, compile_program, plan_compile

from clinsynth.data.task import LMSpec, Task, load_task
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.cliargs import add_cost_flags, add_task_flag, add_timeout_flag, cost_limits, interrupted, print_plan
from clinsynth.llm.meter import describe_usage

PROG = "python -m programs.compile"
DESCRIPTION = (
    "Tune a program's prompt with an optimizer and score it on gold dev before and after.\n"
    "data-to-label takes its demos from gold train; label-to-data is scored per gold dev category."
)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except where there is none to show (None, False): the help text says what happens.

    The description and the optimizer list below the flags keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The flags; ``prog`` lets another CLI (``clinsynth compile``) show its own name in --help."""
    optimizers = "\n".join(f"  {o.name:<16} {o.help} ({', '.join(sorted(o.programs))})" for o in OPTIMIZERS.values())
    p = argparse.ArgumentParser(
        prog=prog,
        description=DESCRIPTION,
        epilog=f"optimizers (cheapest first):\n{optimizers}",
        formatter_class=_HelpFormatter,
    )
    add_task_flag(p)
    p.add_argument("--program", choices=sorted(PROGRAMS), default="data-to-label", help="the program to compile")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="labeled-fewshot", help="see the list below")
    p.add_argument(
        "--lm", default=None, help="'local' (embedded) or a litellm model string (default: the task's prompt_model)"
    )
    p.add_argument("--api-base", default=None, help="base URL for a self-hosted OpenAI-compatible server (vLLM...)")
    p.add_argument("--train", type=Path, default=None, help="data-to-label demos (default: the task's gold train)")
    p.add_argument("--dev", type=Path, default=None, help="scored before and after (default: the task's gold dev)")
    p.add_argument("--dev-limit", type=int, default=None, help="data-to-label: score on the first N dev sentences only")
    p.add_argument("--taxonomy", type=Path, default=None, help="guideline YAML (default: the task's)")
    p.add_argument("--k", type=int, default=None, help="demos per prompt (default 18; label-to-data 2)")
    p.add_argument(
        "--per-target", type=int, default=1, help="label-to-data: dev calls per target (train: twice as many)"
    )
    p.add_argument(
        "--labeler",
        type=Path,
        default=None,
        help="label-to-data: DataToLabel program for the round trip (default: the task's compiled one for the LM)",
    )
    p.add_argument("--trials", type=int, default=6, help="search budget for random-search/mipro/gepa")
    p.add_argument("--seed", type=int, default=0, help="demo order, planned calls and optimizer seed")
    p.add_argument("--threads", type=int, default=1, help="parallel requests (1 for the embedded LM)")
    add_timeout_flag(p)
    p.add_argument(
        "--out", type=Path, default=None, help="output JSON (default: <task compiled dir>/<program>.<lm>.json)"
    )
    p.add_argument("--skip-before", action="store_true", help="do not score the uncompiled program")
    add_cost_flags(p)
    return p


def lm_spec(task: Task, lm: str | None, api_base: str | None) -> LMSpec | None:
    """The LM the flags ask for; None = the task's prompt_model. ``--api-base`` alone keeps the task's model."""
    if lm is None and api_base is None:
        return None
    # A --lm of its own does not inherit the task's api_base (that server serves the task's model).
    return LMSpec(model=lm or task.lm("prompt_model").model, api_base=api_base)


def config_from_args(args: argparse.Namespace) -> CompileConfig:
    return CompileConfig(
        program=args.program,
        optimizer=args.optimizer,
        k=args.k,
        trials=args.trials,
        seed=args.seed,
        threads=args.threads,
        dev_limit=args.dev_limit,
        per_target=args.per_target,
        skip_before=args.skip_before,
        out=args.out,
        labeler=args.labeler,
        train=args.train,
        dev=args.dev,
        timeout=args.timeout,
        limits=cost_limits(args),
    )


def run(args: argparse.Namespace, handle: Any = None) -> int:
    """Compile as ``args`` (from ``build_parser``) say and print the table; 2 on an error the user can fix."""
    try:
        task = load_task(args.task)
        if args.taxonomy is not None:
            # A guideline other than the task's: everything else (gold, compiled dir) stays the task's.
            task = replace(task, taxonomy_path=args.taxonomy.resolve())
        config = config_from_args(args)
        spec = lm_spec(task, args.lm, args.api_base)
        if args.dry_run:
            return print_plan(plan_compile(task, config, lm=spec))
        result = compile_program(task, config, handle=handle, lm=spec)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted()
    print(result.table())
    print(describe_usage(result.usage))
    print(f"wrote {result.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())

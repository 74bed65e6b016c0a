"""Flags every command shares (task, LM, the resumable map, cost plan and guards), defined once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from clinsynth.data.task import LMSpec
from clinsynth.jobs.engine_ray import ENGINES, RayEngine
from clinsynth.jobs.resumable import MapSettings
from clinsynth.llm.lm import REQUEST_TIMEOUT
from clinsynth.llm.meter import Limits

TASK_HELP = "task folder with a clinsynth.toml (default: $CLINSYNTH_TASK, else the bundled AD task)"
MAP_DEFAULTS = MapSettings()
LIMIT_DEFAULTS = Limits()
ENGINE_DEFAULTS = RayEngine()


def add_task_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", type=Path, default=None, help=TASK_HELP)


def add_lm_flags(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument("--lm", default=None, help=f"'local' (embedded) or a litellm model string (default: task's {role})")
    p.add_argument("--api-base", default=None, help="base URL for a self-hosted OpenAI-compatible server (vLLM...)")


def lm_override(args: argparse.Namespace, base: LMSpec) -> LMSpec | None:
    """``--lm`` / ``--api-base`` over the task's spec for the role; None when neither is given."""
    if not (args.lm or args.api_base):
        return None
    return LMSpec(model=args.lm or base.model, api_base=args.api_base)


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds > 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {value!r}")
    return seconds


def _count(value: str) -> int:
    count = int(value)
    if count < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value!r}")
    return count


def add_timeout_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--timeout", type=_seconds, default=REQUEST_TIMEOUT, help="seconds an LM request may take before it is retried"
    )


MAX_FAILURES_HELP = "failed items the run may leave and still exit 0 (they stay in the failures file)"


def add_map_flags(
    p: argparse.ArgumentParser,
    unit: str = "item",
    max_failures: int | None = MAP_DEFAULTS.max_failures,
    max_failures_help: str = MAX_FAILURES_HELP,
) -> None:
    """Retries, timeout, parallelism and fail-fast of the resumable map (``clinsynth.jobs.resumable``)."""
    p.add_argument("--threads", type=int, default=MAP_DEFAULTS.threads, help="parallel requests")
    p.add_argument("--attempts", type=int, default=MAP_DEFAULTS.attempts, help=f"tries per {unit}")
    add_timeout_flag(p)
    p.add_argument(
        "--max-consecutive-failures",
        type=int,
        default=MAP_DEFAULTS.max_consecutive_failures,
        help="endpoint failures in a row that stop the run",
    )
    p.add_argument(
        "--max-failures",
        type=_count,
        default=max_failures,
        help=max_failures_help,
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def map_settings(args: argparse.Namespace) -> MapSettings:
    return MapSettings(
        attempts=args.attempts,
        threads=args.threads,
        max_consecutive_failures=args.max_consecutive_failures,
        show_progress=not args.no_progress,
        timeout=args.timeout,
        max_failures=args.max_failures,
        limits=cost_limits(args),
    )


def _dollars(value: str) -> float:
    dollars = float(value)
    if not dollars >= 0:  # also NaN
        raise argparse.ArgumentTypeError(f"must be a non-negative number of US dollars, got {value!r}")
    return dollars


def _per_minute(value: str) -> float:
    rate = float(value)
    if not rate > 0:
        raise argparse.ArgumentTypeError(f"must be a positive rate per minute, got {value!r}")
    return rate


def add_cost_flags(p: argparse.ArgumentParser) -> None:
    """The cost plan and guards for paid LMs (``clinsynth.llm.cost``, ``clinsynth.llm.meter``)."""
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print calls, prompt and completion tokens and the estimated cost, and stop: nothing is sent, "
        "no LM server starts",
    )
    p.add_argument(
        "--max-cost",
        type=_dollars,
        default=LIMIT_DEFAULTS.max_cost,
        metavar="USD",
        help="stop before a request could take this run's spend past USD (litellm's offline prices)",
    )
    p.add_argument("--rpm", type=_per_minute, default=LIMIT_DEFAULTS.rpm, help="at most N requests a minute")
    p.add_argument(
        "--tpm", type=_per_minute, default=LIMIT_DEFAULTS.tpm, help="at most N tokens a minute (prompt + max_tokens)"
    )


def cost_limits(args: argparse.Namespace) -> Limits:
    return Limits(max_cost=args.max_cost, rpm=args.rpm, tpm=args.tpm)


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    """How classifiers are trained (``clinsynth.model.classifier.TrainingBudget``); defaults from there."""
    from clinsynth.model.classifier import RECIPES, TrainingBudget

    default = TrainingBudget()
    p.add_argument("--recipe", choices=RECIPES, default=default.recipe, help="how the classifier is trained")
    p.add_argument("--epochs", type=int, default=default.epochs, help="end-to-end: most epochs (best on dev kept)")
    p.add_argument("--max-steps", type=int, default=default.max_steps, help="contrastive: training steps")
    p.add_argument("--batch-size", type=int, default=default.batch_size, help="sentences (pairs) per step")
    p.add_argument("--encoder", default=default.encoder,
                   help="sentence-transformers folder to fine-tune (default: the bundled all-MiniLM-L6-v2; "
                        "a larger one: python -m clinsynth.model.encoders)")  # fmt: skip


def budget_from_args(args: argparse.Namespace) -> Any:
    from clinsynth.model.classifier import TrainingBudget

    return TrainingBudget(recipe=args.recipe, encoder=args.encoder, epochs=args.epochs, max_steps=args.max_steps,
                          batch_size=args.batch_size)  # fmt: skip


def print_plan(plan: Any) -> int:
    """Print a dry run's cost plan (``clinsynth.llm.cost.CostPlan``); exit status 2 if the real run would be refused."""
    return print_plans([plan])


def print_plans(plans: list[Any]) -> int:
    """Print the cost plans of a run's LM steps, with their total when there are several; exit status 2 if
    the real run would be refused."""
    import sys

    from clinsynth.llm.pricing import dollars
    from clinsynth.report import format_table

    if not plans:
        print("dry run: this run sends nothing to an LM (it uses the committed programs, silver and bronze)")
    for plan in plans:
        print(plan.render() + "\n")
    if len(plans) > 1:
        costs = [plan.cost for plan in plans]
        total = None if None in costs else sum(costs)
        times = [plan.seconds for plan in plans]
        total_time = None if None in times else sum(t for t in times if t is not None)

        def minutes(seconds: float | None) -> str:
            return "-" if seconds is None else f"{seconds / 60:.0f} min"

        rows = [[p.command, p.model, p.calls, p.prompt_tokens, p.completion_tokens, dollars(p.cost), minutes(t)]
                for p, t in zip(plans, times, strict=True)]  # fmt: skip
        rows.append(["total", "", sum(p.calls for p in plans), sum(p.prompt_tokens for p in plans),
                     sum(p.completion_tokens for p in plans), dollars(total), minutes(total_time)])  # fmt: skip
        headers = ["step", "model", "calls", "prompt tokens", "completion tokens (est.)", "cost", "time (est.)"]
        print(format_table(headers, rows))
        max_cost = plans[0].max_cost
        if max_cost is not None and total is not None:
            print(f"--max-cost ${max_cost:.4f} for the whole run: the estimate is "
                  f"{'within' if total <= max_cost else 'OVER'} budget")  # fmt: skip
    refused = [plan for plan in plans if plan.refused]
    for plan in refused:
        print(f"error: dry run only: the real run would be refused ({plan.command}): {plan.refused}", file=sys.stderr)
    return 2 if refused else 0


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """Where the per-item work runs: this process, or Ray actors (``clinsynth.jobs.engine_ray``)."""
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0],
                   help="local: this process; ray: Ray actors, output in shards merged in input order "
                   "(the 'scale' extra)")  # fmt: skip
    p.add_argument("--ray-address", default=ENGINE_DEFAULTS.address,
                   help="an existing Ray cluster (ray://HEAD:10001, or auto on a cluster node); "
                   "none: a local cluster for the run")  # fmt: skip
    p.add_argument("--ray-workers", type=int, default=ENGINE_DEFAULTS.workers,
                   help="Ray workers; none: one per CPU of the cluster, at most one per shard")  # fmt: skip
    p.add_argument("--shard-size", type=int, default=ENGINE_DEFAULTS.shard_size,
                   help="items per shard, the unit a worker takes and a killed run resumes by"
                   "; none: predict 1024, label 64")  # fmt: skip


def engine_from_args(args: argparse.Namespace) -> RayEngine | None:
    """The run's ``RayEngine``, or None for the local engine (where the Ray flags make no sense)."""
    from clinsynth.errors import ClinsynthError

    given = [f for f, v in (("--ray-address", args.ray_address), ("--ray-workers", args.ray_workers),
                            ("--shard-size", args.shard_size)) if v is not None]  # fmt: skip
    if args.engine != "ray":
        if given:
            raise ClinsynthError(f"{', '.join(given)} only apply with --engine ray")
        return None
    if args.ray_workers is not None and args.ray_workers < 1:
        raise ClinsynthError(f"--ray-workers must be at least 1, got {args.ray_workers}")
    return RayEngine(
        address=args.ray_address,
        workers=args.ray_workers,
        shard_size=args.shard_size,
        show_progress=not getattr(args, "no_progress", False),
    )


def interrupted() -> int:
    """One line for Ctrl-C instead of a traceback: what is kept and how to go on (exit status 130)."""
    print("\ninterrupted: everything finished is kept (records written, finished training runs, compiled "
          "programs); run the same command again to resume from there", file=sys.stderr)  # fmt: skip
    return 130

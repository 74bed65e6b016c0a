"""Flags every command shares (task, LM, the resumable map), defined once."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from clinsynth.lm import REQUEST_TIMEOUT
from clinsynth.resumable import MapSettings
from clinsynth.task import LMSpec

TASK_HELP = "task folder with a clinsynth.toml (default: $CLINSYNTH_TASK, else the bundled AD task)"
MAP_DEFAULTS = MapSettings()


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


def add_map_flags(p: argparse.ArgumentParser, unit: str = "item") -> None:
    """Retries, timeout, parallelism and fail-fast of the resumable map (``clinsynth.resumable``)."""
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
        default=MAP_DEFAULTS.max_failures,
        help="failed items the run may leave and still exit 0 (they stay in the failures file)",
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
    )


def add_budget_flags(p: argparse.ArgumentParser) -> None:
    """How classifiers are trained (``clinsynth.classifier.TrainingBudget``); defaults from there."""
    from clinsynth.classifier import RECIPES, TrainingBudget

    default = TrainingBudget()
    p.add_argument("--recipe", choices=RECIPES, default=default.recipe, help="how the classifier is trained")
    p.add_argument("--epochs", type=int, default=default.epochs, help="end-to-end: most epochs (best on dev kept)")
    p.add_argument("--max-steps", type=int, default=default.max_steps, help="contrastive: training steps")
    p.add_argument("--batch-size", type=int, default=default.batch_size, help="sentences (pairs) per step")


def budget_from_args(args: argparse.Namespace) -> Any:
    from clinsynth.classifier import TrainingBudget

    return TrainingBudget(recipe=args.recipe, epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size)

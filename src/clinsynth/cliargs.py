"""Flags every command shares (task, LM, the resumable map), defined once."""

from __future__ import annotations

import argparse
from pathlib import Path

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


def add_map_flags(p: argparse.ArgumentParser, unit: str = "item") -> None:
    """Retries, parallelism and fail-fast of the resumable map (``clinsynth.resumable``)."""
    p.add_argument("--threads", type=int, default=MAP_DEFAULTS.threads, help="parallel requests")
    p.add_argument("--attempts", type=int, default=MAP_DEFAULTS.attempts, help=f"tries per {unit}")
    p.add_argument(
        "--max-consecutive-failures",
        type=int,
        default=MAP_DEFAULTS.max_consecutive_failures,
        help="endpoint failures in a row that stop the run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def map_settings(args: argparse.Namespace) -> MapSettings:
    return MapSettings(
        attempts=args.attempts,
        threads=args.threads,
        max_consecutive_failures=args.max_consecutive_failures,
        show_progress=not args.no_progress,
    )

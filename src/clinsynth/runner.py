"""Run an LM-backed step per record with retries; failures are recorded, never fatal.

Transport errors (refused connection, timeout, 429) are first retried by litellm inside
``dspy.LM`` (``num_retries``, with backoff). What still fails, and answers the adapter
cannot parse, are retried here with a fresh sample (new rollout id, temperature > 0, so
the cache cannot return the same bad answer); after the last attempt the error is
returned for the caller to record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dspy

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_TEMPERATURE = 0.7


@dataclass
class Attempt:
    """The outcome of one record: a value, or the last error after all attempts."""

    value: Any = None
    error: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def call_with_retries(fn: Callable[[], T], lm: Any, attempts: int = 3) -> Attempt:
    """Call ``fn`` under ``lm``; on failure retry with a fresh sample up to ``attempts`` times."""
    error = None
    for k in range(attempts):
        current = lm if k == 0 else lm.copy(rollout_id=k, temperature=RETRY_TEMPERATURE)
        try:
            with dspy.context(lm=current):
                return Attempt(value=fn(), attempts=k + 1)
        except Exception as exc:  # noqa: BLE001 - any LM/adapter failure is per-record
            error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            log.debug("attempt %d failed: %s", k + 1, error)
    return Attempt(error=error, attempts=attempts)

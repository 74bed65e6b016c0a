"""Run an LM-backed step per record with retries; failures are recorded, never fatal.

This is the one retry layer (``clinsynth.llm.lm.make_lm`` turns DSPy's own retries off): each
record gets up to ``attempts`` tries, so a hanging endpoint costs at most the request
timeout x attempts. Every retry is a fresh sample (new rollout id, temperature > 0, so the
cache cannot return the same bad answer). After a transport error (refused connection,
5xx, 429) the next try waits: as long as the server's Retry-After asks, else a short
backoff; a timeout has waited already. An authentication error is not retried. After the
last attempt the error is returned for the caller to record.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

import dspy

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_TEMPERATURE = 0.7
RETRY_WAIT = 1.0  # seconds before the second try after a transport error; doubled for each later one
MAX_RETRY_WAIT = 60.0  # the longest wait, whatever a server's Retry-After asks


# Exceptions (by class name, anywhere in the cause chain) that mean the endpoint itself is
# unusable: auth errors stop a run at once; transport errors stop it after a few records
# in a row (``resumable.MapSettings.max_consecutive_failures``). A rate limit that outlasts
# every attempt counts as transport: the endpoint is not serving this run.
# litellm's names, then DSPy 3.4's own (dspy.utils.exceptions and its vendored lm15 client).
AUTH_ERRORS = (
    "AuthenticationError",
    "PermissionDeniedError",
    "PaymentRequiredError",
    "LMAuthError",
    "LMBillingError",
    "AuthError",
    "BillingError",
)
TRANSPORT_ERRORS = (
    "LMServerError",
    "LMTransportError",
    "LMTimeoutError",
    "ServerError",
    "TransportError",
    "APIConnectionError",
    "Timeout",
    "ServiceUnavailableError",
    "BadGatewayError",
    "InternalServerError",
    "ConnectError",
    "ConnectionError",
    "TimeoutError",
    "RateLimitError",
    "LMRateLimitError",
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes, outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


# The run's own budget guard (clinsynth.llm.meter) refused the request: nothing was sent; the run stops.
BUDGET_ERRORS = ("BudgetExceeded",)


def error_kind(exc: BaseException) -> str:
    """``budget``, ``auth``, ``transport`` or ``answer`` (a bad or unparseable answer: retry with a fresh sample)."""
    for current in _chain(exc):
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & set(BUDGET_ERRORS):
            return "budget"
        if names & set(AUTH_ERRORS):
            return "auth"
        if names & set(TRANSPORT_ERRORS):
            return "transport"
    return "answer"


def retry_wait(exc: BaseException, tries_failed: int) -> float:
    """Seconds to wait after a transport error before the next try.

    The server's Retry-After when it sent one (DSPy keeps it as ``retry_after``); nothing
    after a timeout (the request has waited its time already); else ``RETRY_WAIT``
    doubled per earlier failure. Never more than ``MAX_RETRY_WAIT``.
    """
    for current in _chain(exc):
        hint = getattr(current, "retry_after", None)
        if isinstance(hint, (int, float)) and math.isfinite(hint) and hint >= 0:
            return min(float(hint), MAX_RETRY_WAIT)
    if any("Timeout" in type(current).__name__ for current in _chain(exc)):
        return 0.0
    return min(RETRY_WAIT * 2 ** (tries_failed - 1), MAX_RETRY_WAIT)


@dataclass
class Attempt:
    """The outcome of one record: a value, or the last error after all attempts."""

    value: Any = None
    error: str | None = None
    attempts: int = 0
    kind: str = ""  # error_kind of the last error
    rollout: int = 0  # the rollout (DSPy cache key) of the answer or the last try
    temperature: float | None = None  # the temperature of that try

    @property
    def ok(self) -> bool:
        return self.error is None


def call_with_retries(fn: Callable[[], T], lm: Any, attempts: int = 3, rollout_base: int = 0) -> Attempt:
    """Call ``fn`` under ``lm``; on failure retry with a fresh sample up to ``attempts`` times.

    Attempt k uses rollout ``rollout_base + k`` (rollout 0 = ``lm`` as is). Rollouts are
    part of DSPy's cache key: a rerun that starts past the rollouts an earlier run used
    (``rollout_base`` = attempts already spent) gets fresh samples instead of replaying
    cached failures.
    """
    error, kind = None, ""
    rollout, temperature = rollout_base, lm.kwargs.get("temperature")
    k = -1
    for k in range(attempts):
        rollout = rollout_base + k
        if rollout == 0:
            current = lm
            temperature = lm.kwargs.get("temperature")
        else:
            # A rollout only differs from another at temperature > 0.
            temperature = lm.kwargs.get("temperature") or RETRY_TEMPERATURE
            current = lm.copy(rollout_id=rollout, temperature=temperature)
        try:
            with dspy.context(lm=current):
                return Attempt(value=fn(), attempts=k + 1, rollout=rollout, temperature=temperature)
        except Exception as exc:  # noqa: BLE001 - any LM/adapter failure is per-record
            error = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"  # one line, for messages
            kind = error_kind(exc)
            log.debug("attempt %d failed (%s): %s", k + 1, kind, error)
            if kind in ("auth", "budget"):
                break  # a wrong key does not get better with retries, nor a spent budget
            if kind == "transport" and k + 1 < attempts:
                time.sleep(retry_wait(exc, k + 1))
    return Attempt(error=error, attempts=k + 1, kind=kind, rollout=rollout, temperature=temperature)


def map_with_retries(
    fn: Callable[[Any], T],
    inputs: Iterable[Any],
    handle: Any,
    attempts: int = 3,
    threads: int = 1,
    rollout_base: Callable[[Any], int] | None = None,
) -> Iterator[tuple[Any, Attempt]]:
    """``call_with_retries(fn(x))`` for each input under ``handle``'s LM and adapter.

    Yields ``(input, Attempt)`` as each finishes, so callers can write results at once
    (nothing is lost if the run is killed). ``threads`` > 1 sends requests in parallel,
    for endpoints that serve several at a time; DSPy settings are thread-local, so each
    worker enters the handle's context itself. ``rollout_base(x)`` gives an input's first
    rollout (see ``call_with_retries``).
    """

    def one(x: Any) -> tuple[Any, Attempt]:
        base = rollout_base(x) if rollout_base is not None else 0
        with handle.context():
            return x, call_with_retries(lambda: fn(x), handle.lm, attempts, base)

    if threads <= 1:
        for x in inputs:
            yield one(x)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending = [pool.submit(one, x) for x in inputs]
        try:
            for future in as_completed(pending):
                yield future.result()
        finally:
            for future in pending:
                future.cancel()


def run_all(
    fn: Callable[[Any], T],
    inputs: list[Any],
    handle: Any,
    attempts: int = 3,
    threads: int = 1,
    desc: str = "",
    show_progress: bool = True,
) -> list[Attempt]:
    """``map_with_retries`` collected in input order, with a progress bar."""
    from clinsynth.progress import progress

    results: list[Attempt | None] = [None] * len(inputs)
    indexed = list(enumerate(inputs))
    stream = map_with_retries(lambda pair: fn(pair[1]), indexed, handle, attempts, threads)
    for (i, _), attempt in progress(stream, total=len(inputs), desc=desc, disable=not show_progress):
        results[i] = attempt
    return [r if r is not None else Attempt(error="not run") for r in results]

"""Run an LM-backed step per record with retries; failures are recorded, never fatal.

Transport errors (refused connection, timeout, 429) are first retried by litellm inside
``dspy.LM`` (``num_retries``, with backoff). What still fails, and answers the adapter
cannot parse, are retried here with a fresh sample (new rollout id, temperature > 0, so
the cache cannot return the same bad answer); after the last attempt the error is
returned for the caller to record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

import dspy

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_TEMPERATURE = 0.7


# Exceptions (by class name, anywhere in the cause chain) that mean the endpoint itself is
# unusable: auth errors stop a run at once; transport errors stop it after a few records
# in a row (``resumable.MapSettings.max_consecutive_failures``).
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
)


def error_kind(exc: BaseException) -> str:
    """``auth``, ``transport`` or ``answer`` (a bad or unparseable answer: retry with a fresh sample)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        names = {cls.__name__ for cls in type(current).__mro__}
        if names & set(AUTH_ERRORS):
            return "auth"
        if names & set(TRANSPORT_ERRORS):
            return "transport"
        current = current.__cause__ or current.__context__
    return "answer"


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
            error = f"{type(exc).__name__}: {str(exc).strip()[:500]}"
            kind = error_kind(exc)
            log.debug("attempt %d failed (%s): %s", k + 1, kind, error)
            if kind == "auth":
                break  # a wrong key does not get better with retries
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

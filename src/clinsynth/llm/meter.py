"""What a run spends on its LM, and the guards on it: a cost budget and rate limits.

Every LM ``clinsynth.llm.lm.make_lm`` builds is a ``MeteredLM``: before each request it waits
for the rate limiter (``--rpm`` / ``--tpm``) and checks the budget (``--max-cost``), and
after it the meter adds the request's real usage, as the endpoint reported it, through
DSPy's usage tracking (answers from DSPy's cache are not counted: they cost nothing).

The budget check is conservative, so a run never passes its budget: a request may only
go out if the spend so far, plus what requests in flight may still cost, plus the most
this one can cost (its prompt counted with the model's tokenizer, and ``max_tokens`` of
completion) stays within ``max_cost``. The first request refused stops the meter: every
later one is refused too, so worker threads drain at once and the run stops with
``BudgetExceeded`` (exit status 2); what was written is kept and a rerun resumes.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from clinsynth.errors import BudgetExceeded, LMSetupError
from clinsynth.llm import pricing
from clinsynth.llm.cache_keys import endpoint_scope


@dataclass(frozen=True)
class Limits:
    """Guards on a run's LM use; None = no limit. Each default lives here (``--max-cost``, ``--rpm``, ``--tpm``)."""

    max_cost: float | None = None  # US dollars this run may spend (litellm's offline prices)
    rpm: float | None = None  # requests per minute, client side
    tpm: float | None = None  # tokens per minute (prompt + max_tokens of each request), client side


class RateLimiter:
    """At most ``per_minute`` units in any 60-second window; shared by the worker threads of a run.

    A sliding log of what was taken, not a token bucket: a bucket that starts full and
    refills lets twice its size through in the first minute, and a provider counting
    requests per rolling minute rejects the excess. ``acquire(n)`` blocks until ``n`` units
    fit in the window; a request larger than the limit waits for an empty window (it would
    otherwise wait forever). ``clock`` and ``sleep`` are injectable so tests need not wait.
    """

    WINDOW = 60.0  # seconds

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not per_minute > 0:
            raise LMSetupError(f"a rate limit must be positive, got {per_minute}")
        self.capacity = float(per_minute)
        self.clock, self.sleep = clock, sleep
        self.taken: deque[tuple[float, float]] = deque()  # (when, units), oldest first
        self.used = 0.0  # units taken within the last WINDOW seconds
        self.lock = threading.Lock()

    def acquire(self, n: float = 1.0) -> float:
        """Take ``n`` units, waiting as long as needed; returns the seconds waited."""
        n = min(float(n), self.capacity)
        waited = 0.0
        while True:
            with self.lock:
                now = self.clock()
                while self.taken and self.taken[0][0] <= now - self.WINDOW:
                    self.used -= self.taken.popleft()[1]
                if self.used + n <= self.capacity + 1e-9:
                    self.taken.append((now, n))
                    self.used += n
                    return waited
                wait = self._until_room(now, self.used + n - self.capacity)
            self.sleep(wait)
            waited += wait

    def _until_room(self, now: float, excess: float) -> float:
        """Seconds until the oldest entries holding ``excess`` units leave the window."""
        freed = 0.0
        for when, units in self.taken:
            freed += units
            if freed >= excess - 1e-9:
                return max(when + self.WINDOW - now, 1e-3)
        return self.WINDOW


class Meter:
    """Usage and cost of one run's LM, the budget check and the rate limiters (thread-safe).

    Implements ``add_usage(lm, usage)``, DSPy's usage-tracker interface, so DSPy reports
    each request's real usage here. Copies of the LM (``lm.copy``: retries, sampling)
    share the meter, so a whole run is counted in one place.
    """

    def __init__(self, model: str, limits: Limits = Limits()) -> None:
        self.model = model  # the model string litellm prices and counts tokens for
        self.limits = limits
        self.price = pricing.price_per_token(model)
        if limits.max_cost is not None and self.price is None:
            raise LMSetupError(
                f"--max-cost needs a price for {model!r}, and litellm's cost map has none: "
                "register one with litellm.register_model, or drop --max-cost"
            )
        self.requests = None if limits.rpm is None else RateLimiter(limits.rpm)
        self.tokens = None if limits.tpm is None else RateLimiter(limits.tpm)
        self.calls = 0  # requests the endpoint answered (cache hits excluded)
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.spent = 0.0
        self.reserved = 0.0  # the most that requests in flight may still cost
        self.stopped: BudgetExceeded | None = None
        self.lock = threading.Lock()

    def __deepcopy__(self, memo: dict) -> Meter:
        return self  # one meter per run, whatever copies a program or optimizer makes of the LM

    # -- before a request
    def before(self, messages: list[dict[str, Any]] | None, max_tokens: int) -> float:
        """Wait for the rate limiters and reserve the request's worst-case cost; returns the reservation."""
        if self.requests is None and self.tokens is None and self.limits.max_cost is None:
            return 0.0
        if self.stopped is not None:  # refused at once: no wait for the rate limiters
            raise self.stopped
        prompt = pricing.count_tokens(self.model, messages or [])
        if self.requests is not None:
            self.requests.acquire(1)
        if self.tokens is not None:
            self.tokens.acquire(prompt + max_tokens)
        if self.limits.max_cost is None or self.price is None:
            return 0.0
        worst = prompt * self.price[0] + max_tokens * self.price[1]
        with self.lock:
            if self.stopped is None and self.spent + self.reserved + worst > self.limits.max_cost:
                self.stopped = BudgetExceeded(
                    f"stopped before passing --max-cost ${self.limits.max_cost:.4f}: spent ${self.spent:.4f} "
                    f"on {self.calls} calls ({self.model}), and the next call may cost up to ${worst:.4f} "
                    f"({prompt} prompt tokens + {max_tokens} completion tokens at most)"
                )
            if self.stopped is not None:
                raise self.stopped
            self.reserved += worst
        return worst

    def release(self, reservation: float) -> None:
        if reservation:
            with self.lock:
                self.reserved = max(0.0, self.reserved - reservation)

    # -- after a request (DSPy's usage-tracker interface)
    def add_usage(self, lm: str, usage: dict[str, Any]) -> None:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        spent = pricing.usage_cost(self.price, prompt, completion)
        with self.lock:
            self.calls += 1
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            if spent is not None:
                self.spent += spent

    def summary(self) -> dict[str, Any]:
        """This run's real usage, as results print it and summary files record it."""
        with self.lock:
            return {
                "model": self.model,
                "calls": self.calls,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost_usd": None if self.price is None else round(self.spent, 6),
                "priced_by": pricing.price_source(self.model, self.price),
                "stopped_by_budget": self.stopped is not None,
            }


def log_run(out: Path, row: dict[str, Any]) -> Path:
    """Append one run's summary (usage and cost included) to ``<out>.runs.jsonl``: spending over resumed runs."""
    from clinsynth.data.records import now_iso, side_path

    path = side_path(out, "runs.jsonl")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"at": now_iso(), **row}, ensure_ascii=False) + "\n")
    return path


def describe_usage(usage: dict[str, Any] | None) -> str:
    """One line for a run's summary: calls, tokens and dollars."""
    if not usage:
        return "usage: not metered"
    return (
        f"usage: {usage['calls']} calls, {usage['prompt_tokens']} prompt + {usage['completion_tokens']} "
        f"completion tokens, {pricing.dollars(usage['cost_usd'], 'unknown price')} ({usage['priced_by']})"
    )


class _Tee:
    """The usage tracker of one request: the run's meter, and any tracker already active (``dspy.track_usage``)."""

    def __init__(self, meter: Meter, outer: Any) -> None:
        self.meter, self.outer = meter, outer

    def add_usage(self, lm: str, usage: dict[str, Any]) -> None:
        self.meter.add_usage(lm, usage)
        if self.outer is not None:
            self.outer.add_usage(lm, usage)


class MeteredLM(dspy.LM):
    """``dspy.LM`` whose every request passes the run's meter (see the module docstring)."""

    meter: Meter | None = None  # set by clinsynth.llm.lm.make_lm; shared by copies (lm.copy is shallow)
    cache_endpoint: str | None = None  # where requests go, part of every cache key (clinsynth.llm.cache_keys)

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        with endpoint_scope(self.cache_endpoint):
            return self._metered_call(prompt, messages, kwargs)

    def _metered_call(self, prompt: Any, messages: Any, kwargs: dict[str, Any]) -> Any:
        meter = self.meter
        if meter is None:
            return super().__call__(prompt, messages=messages, **kwargs)
        rendered = messages if messages is not None else [{"role": "user", "content": str(prompt or "")}]
        max_tokens = int(kwargs.get("max_tokens") or self.kwargs.get("max_tokens") or 0)
        reservation = meter.before(rendered, max_tokens)
        try:
            with dspy.context(usage_tracker=_Tee(meter, dspy.settings.usage_tracker)):
                return super().__call__(prompt, messages=messages, **kwargs)
        finally:
            meter.release(reservation)

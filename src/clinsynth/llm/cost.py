"""Tokens and dollars: count a program's real prompts and price them, before anything is sent.

Prompts are the messages the run's adapter formats for each call (system message with
the guideline, demos, the input), counted with ``litellm.token_counter`` (the model's
tokenizer where litellm knows it, else its default, tiktoken's cl100k). Completion
tokens are an estimate: the adapter's formatting of a typical answer (a labeller answer
with one label; a generator answer of ``per_call`` sentences of ``TYPICAL_SENTENCE_WORDS``
words), and ``max_tokens`` is the most a call can take. Prices come from litellm's
offline cost map (``LITELLM_LOCAL_MODEL_COST_MAP``, set by ``clinsynth.env``); the
embedded model costs nothing; a model the map does not list has no price (None).

A ``CostPlan`` is what ``--dry-run`` prints: calls, prompt and completion tokens and
dollars per part of the run, plus what the estimate assumes. Making one opens no LM,
starts no server and sends nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clinsynth.data.task import LMSpec
from clinsynth.errors import PrivacyError
from clinsynth.llm.pricing import (
    LOCAL_COMPLETION_TOKENS_PER_S,
    LOCAL_MODEL,
    LOCAL_PROMPT_TOKENS_PER_S,
    count_text_tokens,
    dollars,
    is_local_model,
    price_per_token,
    price_source,
    usage_cost,
)

# Words in a typical generated sentence: the mean of LabelToData's length constraints
# (under 8, 10-20 and 20-35 words).
TYPICAL_SENTENCE_WORDS = 16


def duration_words(seconds: float | None, what: str = "lm") -> str:
    """A dry run's time estimate in words, for the embedded LM's calls (``lm``) or SetFit ``training``."""
    if seconds is None:
        if what == "training":
            return "not estimated (measured only for end-to-end training of the bundled encoder)"
        return "not estimated: a remote endpoint sets its own pace (--threads sends calls in parallel)"
    amount = f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min" if seconds >= 90 else (
        f"{seconds:.0f} s")  # fmt: skip
    if what == "training":
        return f"at most about {amount} on 2 CPU cores (every epoch run; early stopping often ends sooner)"
    pace = f"{LOCAL_PROMPT_TOKENS_PER_S:.0f} prompt and {LOCAL_COMPLETION_TOKENS_PER_S:.0f} completion tokens/s"
    return f"about {amount} with the embedded model on 2 CPU cores ({pace}, the shared prompt prefix read once)"


def shared_prefix_tokens(model: str, prompts: list[list[dict]]) -> int:
    """Tokens at the start of every prompt (the same instructions and demos), counted on their text."""
    texts = ["\n".join(str(m.get("content", "")) for m in messages) for messages in prompts]
    if len(texts) < 2:
        return 0
    shared = os.path.commonprefix(texts)
    return count_text_tokens(model, shared) if shared else 0


def planned_endpoint(spec: LMSpec, privacy_gate: Callable[[], Any]) -> tuple[str, str | None]:
    """Where a run would send its requests, and the privacy gate's refusal if it would refuse.

    ``privacy_gate`` is the step's own check (it reads ``.env`` and resolves the endpoint
    as the run would); a dry run reports a refusal instead of stopping on it.
    """
    from clinsynth.llm.session import resolve_endpoint

    refused = None
    try:
        privacy_gate()
    except PrivacyError as exc:
        refused = str(exc)
    if spec.model == LOCAL_MODEL:
        return "embedded LLM, not started", refused
    endpoint = resolve_endpoint(spec)
    return endpoint.api_base or f"{endpoint.provider}'s API", refused


def adapter_for(adapter: Any) -> Any:
    """The adapter a run formats prompts with: the handle's, else DSPy's default (ChatAdapter)."""
    if adapter is not None:
        return adapter
    import dspy

    return dspy.settings.adapter or dspy.ChatAdapter()


def prompt_messages(predictor: Any, adapter: Any, inputs: dict[str, Any], demos: list | None = None) -> list[dict]:
    """The messages ``predictor`` sends for ``inputs`` (its own demos unless ``demos`` are given)."""
    return adapter_for(adapter).format(predictor.signature, predictor.demos if demos is None else demos, inputs)


def answer_tokens(model: str, predictor: Any, adapter: Any, outputs: dict[str, Any]) -> int:
    """Completion tokens of ``outputs`` as the adapter asks the model to write them."""
    text = adapter_for(adapter).format_assistant_message_content(predictor.signature, outputs)
    return count_text_tokens(model, text)


def typical_sentence(words: int = TYPICAL_SENTENCE_WORDS) -> str:
    """A clinical-looking placeholder of ``words`` words (for a generated sentence's length)."""
    base = "Patient reports worsening memory over the past year and needs help with daily medications".split()
    return " ".join((base * (words // len(base) + 1))[:words]) + "."


@dataclass
class PlanLine:
    """One part of a run: how many calls, and their prompt and completion tokens in all."""

    what: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    max_completion_tokens: int = 0  # calls x max_tokens: the most completions can take
    # Tokens every call's prompt starts with (instructions, demos): the embedded server keeps
    # that prefix from the call before, so only the first call reads it.
    shared_prompt_tokens: int = 0

    def local_seconds(self) -> float:
        """How long the embedded model takes for this part, at its measured speed on 2 cores."""
        read = self.prompt_tokens - self.shared_prompt_tokens * max(0, self.calls - 1)
        return max(0, read) / LOCAL_PROMPT_TOKENS_PER_S + self.completion_tokens / LOCAL_COMPLETION_TOKENS_PER_S

    def cost(self, price: tuple[float, float] | None) -> float | None:
        return usage_cost(price, self.prompt_tokens, self.completion_tokens)


@dataclass
class CostPlan:
    """What a run would send and what it would cost (``--dry-run``)."""

    command: str  # label, generate, compile
    model: str  # the model string priced
    endpoint: str
    lines: list[PlanLine] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    refused: str | None = None  # the privacy gate's refusal: the real run would not start
    max_cost: float | None = None
    upper_bound: float | None = None  # generate: dollars if every top-up round ran in full

    @property
    def price(self) -> tuple[float, float] | None:
        return price_per_token(self.model)

    @property
    def calls(self) -> int:
        return sum(line.calls for line in self.lines)

    @property
    def prompt_tokens(self) -> int:
        return sum(line.prompt_tokens for line in self.lines)

    @property
    def completion_tokens(self) -> int:
        return sum(line.completion_tokens for line in self.lines)

    @property
    def cost(self) -> float | None:
        return usage_cost(self.price, self.prompt_tokens, self.completion_tokens)

    @property
    def seconds(self) -> float | None:
        """Estimated time with the embedded model; None for another model (its endpoint sets the pace)."""
        if not is_local_model(self.model):
            return None
        return sum(line.local_seconds() for line in self.lines)

    @property
    def worst_cost(self) -> float | None:
        """Dollars if every completion ran to max_tokens (what ``--max-cost`` reserves per call)."""
        return usage_cost(self.price, self.prompt_tokens, sum(line.max_completion_tokens for line in self.lines))

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "model": self.model,
            "endpoint": self.endpoint,
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost,
            "worst_case_usd": self.worst_cost,
            "upper_bound_usd": self.upper_bound,
            "lines": [line.__dict__ | {"cost_usd": line.cost(self.price)} for line in self.lines],
            "assumptions": self.assumptions,
            "refused": self.refused,
        }

    def render(self) -> str:
        from clinsynth.report import format_table

        price = self.price
        rows = [
            [line.what, line.calls, line.prompt_tokens, line.completion_tokens, dollars(line.cost(price))]
            for line in self.lines
        ]
        rows.append(["total", self.calls, self.prompt_tokens, self.completion_tokens, dollars(self.cost)])
        out = [
            f"dry run: {self.command} on {self.model} ({self.endpoint}); nothing sent",
            format_table(["part", "calls", "prompt tokens", "completion tokens (est.)", "cost"], rows),
            f"price: {price_source(self.model, price)}",
        ]
        if self.calls:
            per_call = self.prompt_tokens / self.calls
            out.append(f"prompt tokens per call: {per_call:.0f} (counted with litellm.token_counter)")
        out.append(f"time: {duration_words(self.seconds)}")
        if self.worst_cost is not None and self.cost:
            out.append(f"if every answer ran to max_tokens: {dollars(self.worst_cost)}")
        if self.upper_bound is not None:
            out.append(f"upper bound with every top-up round: {dollars(self.upper_bound)}")
        if self.max_cost is not None and self.cost is not None:
            verdict = "within" if self.cost <= self.max_cost else "OVER"
            out.append(f"--max-cost ${self.max_cost:.4f}: the estimate is {verdict} budget")
        out += [f"assumes: {a}" for a in self.assumptions]
        if self.refused:
            out.append("the real run would be refused by the privacy gate")
        return "\n".join(out)

"""Model strings and prices: what a model is called and what its tokens cost.

Prices come from litellm's offline cost map (``LITELLM_LOCAL_MODEL_COST_MAP``, set by a
command's ``clinsynth.env`` defaults); the embedded model costs nothing. ``clinsynth.llm.meter``
prices every call with these; ``clinsynth.llm.cost`` plans a run's cost with them.
"""

from __future__ import annotations

import functools
from typing import Any

LOCAL_MODEL = "local"
GGUF_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
LOCAL_PRICE = (0.0, 0.0)
# The embedded model's speed on 2 CPU cores (``python benchmarks/local_lm_speed.py``,
# benchmarks/results.md): what a dry run's time estimate for it is made of.
LOCAL_PROMPT_TOKENS_PER_S = 73.0
LOCAL_COMPLETION_TOKENS_PER_S = 11.0


def lm_name_for(model: str) -> str:
    """The name provenance and compiled-program files use for ``model``, known before it starts."""
    return f"local/{GGUF_NAME}" if model == LOCAL_MODEL else model


def is_local_model(model: str) -> bool:
    return model in (LOCAL_MODEL, lm_name_for(LOCAL_MODEL))


@functools.lru_cache(maxsize=64)
def price_per_token(model: str) -> tuple[float, float] | None:
    """(dollars per prompt token, per completion token) from litellm's offline map; None if it has no price."""
    if is_local_model(model):
        return LOCAL_PRICE
    import litellm

    try:
        prompt, completion = litellm.cost_per_token(model=model, prompt_tokens=1, completion_tokens=1)
    except Exception:  # noqa: BLE001 - litellm raises its own types for an unmapped model
        return None
    return float(prompt), float(completion)


def price_source(model: str, price: tuple[float, float] | None) -> str:
    if is_local_model(model):
        return "local: $0"
    if price is None:
        return f"no price for {model} in litellm's cost map"
    return f"litellm cost map: ${price[0] * 1e6:.3g} / ${price[1] * 1e6:.3g} per 1M prompt / completion tokens"


def usage_cost(price: tuple[float, float] | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    if price is None:
        return None
    return prompt_tokens * price[0] + completion_tokens * price[1]


def tokenizer_model(model: str) -> str:
    """The model string litellm counts tokens for (the embedded model: litellm's default tokenizer)."""
    return "openai/qwen" if is_local_model(model) else model


def count_tokens(model: str, messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of ``messages`` as ``model`` would bill them (message overhead included)."""
    import litellm

    return int(litellm.token_counter(model=tokenizer_model(model), messages=messages))


def count_text_tokens(model: str, text: str) -> int:
    import litellm

    return int(litellm.token_counter(model=tokenizer_model(model), text=text, count_response_tokens=True))



def dollars(value: float | None, unknown: str = "unknown") -> str:
    """A dollar figure as printed: ``$0.0123``, or ``unknown`` for a model without a price."""
    return unknown if value is None else f"${value:.4f}"

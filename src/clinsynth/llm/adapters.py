"""DSPy adapters tuned for local servers that cache the prompt prefix (llama.cpp, vLLM).

DSPy's JSONAdapter ends every user message with a reminder that lists each output field
and its full type, after the inputs. For a taxonomy that is ~100 tokens (the whole
``Literal[...]`` of category names) which the server must process again on every call,
because only the text *before* the first changed token is cached. Measured with the
embedded 1.5B model on 2 CPU cores, that tail cost ~2.5 s of a ~3.5 s call. The system
message already carries the types, so the reminder here is one short line.
"""

from __future__ import annotations

from typing import Any

import dspy


class PrefixCachingJSONAdapter(dspy.JSONAdapter):
    """JSONAdapter with a one-line output reminder (keeps the per-call suffix short)."""

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        names = ", ".join(f"`{name}`" for name in signature.output_fields)
        return f"Respond with a JSON object with {names}."


def make_adapter(kind: str | None) -> Any:
    """``json`` (prefix-caching JSON), ``json-full`` (DSPy's JSONAdapter), ``chat`` or None."""
    if kind is None:
        return None
    if kind == "json":
        return PrefixCachingJSONAdapter()
    if kind == "json-full":
        return dspy.JSONAdapter()
    if kind == "chat":
        return dspy.ChatAdapter()
    from clinsynth.errors import LMSetupError

    raise LMSetupError(f"unknown adapter {kind!r}: use 'json', 'json-full' or 'chat'")

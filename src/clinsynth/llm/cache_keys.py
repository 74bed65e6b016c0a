"""DSPy's response cache keyed by endpoint as well as by request.

DSPy leaves ``api_base`` out of its cache key (``IGNORED_CACHE_KEYS``), so an answer cached
from one server is served for another with the same model string and prompt: zero calls,
one endpoint's answers written as another's. ``clinsynth.llm.meter.MeteredLM`` runs each call
inside ``endpoint_scope(lm.cache_endpoint)``, and the key DSPy computes then carries that
endpoint. The endpoint is named after normalising its URL (``privacy.endpoint_identity``), and
the embedded model by its model file, whose loopback port changes every run.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ENDPOINT: ContextVar[str | None] = ContextVar("clinsynth_cache_endpoint", default=None)
_KEY_FIELD = "clinsynth_endpoint"  # a field of the hashed request only; never sent anywhere


@contextmanager
def endpoint_scope(endpoint: str | None) -> Iterator[None]:
    """Cache keys computed inside carry ``endpoint`` (None: DSPy's key, unchanged) once ``install`` ran."""
    token = _ENDPOINT.set(endpoint)
    try:
        yield
    finally:
        _ENDPOINT.reset(token)


def install() -> None:
    """Wrap ``dspy.clients.cache.Cache.cache_key`` once, for every cache instance DSPy may configure."""
    from dspy.clients.cache import Cache

    if getattr(Cache.cache_key, "_keys_endpoint", False):
        return
    original = Cache.cache_key

    def cache_key(self: Any, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        endpoint = _ENDPOINT.get()
        if endpoint is not None and isinstance(request, dict):
            request = {**request, _KEY_FIELD: endpoint}
        return original(self, request, ignored_args_for_cache_key)

    cache_key._keys_endpoint = True  # type: ignore[attr-defined]
    Cache.cache_key = cache_key  # type: ignore[method-assign]

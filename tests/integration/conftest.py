"""Integration tests share one embedded LLM server per module, stopped after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def stop_server_after() -> Iterator[None]:
    yield
    from clinsynth.llm.lm import shutdown_local_server

    shutdown_local_server()

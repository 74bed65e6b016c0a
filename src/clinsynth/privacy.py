"""Sensitivity of data and where LM requests go; the gate itself is ``clinsynth.session``.

Every dataset has a sensitivity: gold (expert-labelled patient text) and a user's own
files are private, the public corpus is public, generated (bronze) text is synthetic.
An endpoint is local when it is served on loopback (and the task does not declare that
loopback URL remote). Private content to a remote endpoint is refused unless the task's
``[privacy] approved_endpoints`` lists it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse

# Providers whose default endpoint is a server on this machine.
_LOCAL_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "llamafile"}


class Sensitivity(StrEnum):
    PRIVATE = "private"
    PUBLIC = "public"
    SYNTHETIC = "synthetic"


SOURCE_SENSITIVITY = {
    "gold": Sensitivity.PRIVATE,
    "silver": Sensitivity.PUBLIC,
    "bronze": Sensitivity.SYNTHETIC,
    "corpus": Sensitivity.PUBLIC,
}


@dataclass(frozen=True)
class Endpoint:
    """Where an LM's requests go: the model string and the base URL, if one is set."""

    model: str
    api_base: str | None = None

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0] if "/" in self.model else self.model

    @property
    def is_local(self) -> bool:
        if self.api_base:
            return is_loopback_url(self.api_base)
        return self.provider in _LOCAL_PROVIDERS

    def describe(self) -> str:
        return f"{self.model} at {self.api_base}" if self.api_base else self.model


def is_loopback_url(url: str) -> bool:
    host = urlparse(url if "://" in url else f"http://{url}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

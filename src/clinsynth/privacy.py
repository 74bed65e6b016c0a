"""The privacy gate: private data goes only to local endpoints or explicitly approved ones.

Every dataset has a sensitivity: gold (expert-labelled patient text) is private, the
public corpus is public, generated (bronze) text is synthetic. An endpoint is local when
it is served on loopback. Sending private text to a remote endpoint is refused unless the
project config lists that endpoint under ``[privacy] approved_endpoints``.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlparse

from clinsynth.config import Config, load_config
from clinsynth.errors import PrivacyError

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


def is_approved(endpoint: Endpoint, config: Config) -> bool:
    """An approval entry matches the model string or the base URL (shell-style wildcards)."""
    candidates = [endpoint.model]
    if endpoint.api_base:
        candidates.append(endpoint.api_base.rstrip("/"))
    return any(
        fnmatch.fnmatchcase(candidate, pattern.rstrip("/"))
        for pattern in config.approved_endpoints
        for candidate in candidates
    )


def check_send(data_name: str, sensitivity: Sensitivity, endpoint: Endpoint, config: Config | None = None) -> None:
    """Raise PrivacyError if ``data_name`` may not be sent to ``endpoint``."""
    if sensitivity is not Sensitivity.PRIVATE or endpoint.is_local:
        return
    config = config if config is not None else load_config()
    if is_approved(endpoint, config):
        return
    where = config.source or "clinsynth.toml"
    raise PrivacyError(
        f"refusing to send private data '{data_name}' to remote endpoint "
        f"'{endpoint.describe()}'. Private (gold) text only goes to local endpoints unless "
        f"you approve this one: add it to [privacy] approved_endpoints in {where}, e.g. "
        f'approved_endpoints = ["{endpoint.api_base or endpoint.model}"]'
    )

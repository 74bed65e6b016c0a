"""Sensitivity of data and where LM requests go; the gate itself is ``clinsynth.llm.session``.

Every dataset has a sensitivity: gold (expert-labelled patient text) and a user's own
files are private, the public corpus is public, generated (bronze) text is synthetic.
An endpoint is local when it is served on loopback (and the task does not declare that
loopback URL remote). Private content to a remote endpoint is refused unless the task's
``[privacy] approved_endpoints`` lists it.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Sequence
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

    def identity(self) -> str:
        """The model string and the base URL normalised as privacy compares them: one spelling per server."""
        if not self.api_base:
            return self.model
        root, path = _canonical_root(self.api_base)
        return f"{self.model} at {root}{path}"


_DEFAULT_PORTS = {"http": "80", "https": "443"}
# Every loopback spelling is one host when URLs are compared: a tunnel declared remote at
# 127.0.0.1:18090 is the same listener as localhost:18090 or [::1]:18090.
LOOPBACK_HOST = "localhost"


def is_loopback_host(host: str) -> bool:
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is loopback too
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlparse(url if "://" in url else f"http://{url}").hostname or "")


def _split_url(url: str) -> tuple[str, str, str | None, str]:
    """(scheme, host, port or None, path) of a URL or a URL pattern (``*`` may stand anywhere).

    Parsed by hand rather than with ``urlparse``, whose ``.port`` rejects a ``*``.
    """
    scheme, _, rest = url.strip().partition("://") if "://" in url else ("http", "", url.strip())
    netloc, slash, path = rest.partition("/")
    path = (slash + path).split("?", 1)[0].split("#", 1)[0]
    netloc = netloc.rsplit("@", 1)[-1]  # user:password@ is no part of where requests go
    port: str | None = None
    if netloc.startswith("["):  # [::1]:8000
        host, _, after = netloc[1:].partition("]")
        port = after[1:] if after.startswith(":") and after[1:] else None
    else:
        host, colon, maybe_port = netloc.rpartition(":")
        if not colon:
            host = maybe_port
        else:
            port = maybe_port or None
    return scheme.lower(), host.lower().rstrip("."), port, path


def _canonical_root(url: str, one_loopback: bool = True) -> tuple[str, str]:
    """``scheme://host:port`` (loopback spelled one way, the scheme's default port written out) and the path.

    The path loses its trailing slashes and an OpenAI-style ``/v1`` at its end: clients
    are configured both ways for one server. ``one_loopback=False`` keeps a loopback
    address as written (for patterns with a wildcard in the host, ``127.0.0.*``).
    """
    scheme, host, port, path = _split_url(url)
    if one_loopback and "*" not in host and is_loopback_host(host):
        host = LOOPBACK_HOST
    elif ":" in host and "*" not in host:
        host = f"[{host}]"  # an IPv6 address, bracketed as in a URL
    port = port or _DEFAULT_PORTS.get(scheme, "")
    path = path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{scheme}://{host}:{port}", path


def url_matches(url: str, pattern: str) -> bool:
    """Does base URL ``url`` match the URL ``pattern`` (shell-style wildcards) once both are normalised?

    Scheme and host are compared without case, loopback names as one host, a missing port
    as the scheme's default, and the path without trailing slash or ``/v1``:
    ``http://127.0.0.1:18090/*`` matches ``HTTP://localhost:18090/v1`` and ``http://[::1]:18090``.
    """
    pattern_root, pattern_path = _canonical_root(pattern)
    if not pattern_path.endswith("*"):
        pattern_path += "/"
    full_pattern = pattern_root + pattern_path
    roots = {_canonical_root(url), _canonical_root(url, one_loopback=False)}
    # The URL with and without /v1, so that a pattern written either way matches both.
    return any(
        fnmatch.fnmatchcase(root + p, full_pattern) for root, path in roots for p in (path + "/", path + "/v1/")
    )


def endpoint_matches(model: str, api_base: str | None, patterns: Sequence[str]) -> bool:
    """A pattern matches the model string, or the base URL (normalised, see ``url_matches``).

    Patterns without ``://`` are also tried on the base URL as written, as they always were.
    """
    for pattern in patterns:
        bare = pattern.rstrip("/")
        if fnmatch.fnmatchcase(model, bare):
            return True
        if not api_base:
            continue
        if "://" in pattern and url_matches(api_base, pattern):
            return True
        if fnmatch.fnmatchcase(api_base.rstrip("/"), bare):
            return True
    return False

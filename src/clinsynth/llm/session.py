"""The one door to every LM: ``open_lm`` checks what will be in the prompts, then connects.

A step opens an LM for a role (labeller, generator, the optimizer's prompt model) and
declares everything its prompts will carry: the input data *and* the programs, whose
state may hold demos or a demo pool. Compiled programs record where their demos came
from; demos of unknown origin count as private, and so do demos that are the task's gold
sentences (compared by hash), whatever the record says. If anything private would reach an
endpoint that is not local and not approved in the task's ``[privacy]`` table, the
session refuses before any server starts or any request is sent, naming the data, the
program and the endpoint.

Local or remote is decided from the base URL litellm would actually use: the explicit
``api_base``, else the provider's environment variables (``OPENAI_BASE_URL``,
``OLLAMA_API_BASE``, ...) after ``.env`` is loaded, else the provider's default. The
resolved URL is then passed to litellm explicitly, so the endpoint checked is the
endpoint used. A proxy the environment sets for it (``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY``, any case, unless ``NO_PROXY`` covers the host) is an endpoint too: private
data passes it only when the proxy itself is local or approved.

Library code reaches LMs only through here (a test enforces it); ``clinsynth.llm.lm`` builds
the ``dspy.LM`` objects.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from clinsynth.data.privacy import Endpoint, Sensitivity, endpoint_matches, is_loopback_url
from clinsynth.data.task import LMSpec, PrivacyPolicy
from clinsynth.errors import LMSetupError, PrivacyError
from clinsynth.llm.lm import LOCAL_MODEL, LMHandle, local_endpoint, make_lm
from clinsynth.paths import PROJECT_ROOT

# Environment variables litellm reads for a provider's base URL, in its order of preference;
# any other provider uses <PROVIDER>_API_BASE / <PROVIDER>_BASE_URL.
_BASE_ENV = {
    "openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "text-completion-openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
    "azure": ("AZURE_API_BASE",),
    "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
    "ollama": ("OLLAMA_API_BASE",),
    "ollama_chat": ("OLLAMA_API_BASE",),
    "hosted_vllm": ("HOSTED_VLLM_API_BASE",),
    "lm_studio": ("LM_STUDIO_API_BASE",),
    "llamafile": ("LLAMAFILE_API_BASE",),
}
# Providers whose default endpoint is a server on this machine.
_LOCAL_DEFAULT_BASE = {
    "ollama": "http://localhost:11434",
    "ollama_chat": "http://localhost:11434",
    "lm_studio": "http://localhost:1234/v1",
    "llamafile": "http://127.0.0.1:8080/v1",
}


@dataclass(frozen=True)
class Content:
    """Something a step's prompts will carry, with its sensitivity."""

    name: str
    sensitivity: Sensitivity


@dataclass(frozen=True)
class DemoSource:
    """Where a program's demos came from (recorded in a compiled program's metadata)."""

    data: str
    sensitivity: Sensitivity

    def to_dict(self) -> dict[str, str]:
        return {"data": self.data, "sensitivity": self.sensitivity.value}


NO_DEMOS = DemoSource("none", Sensitivity.PUBLIC)


def load_env_files(*folders: Path) -> None:
    """Read ``.env`` files (project, then task folder) without overriding set variables."""
    try:
        from dotenv import load_dotenv
    except ImportError:  # python-dotenv is a dependency; a stripped install just skips .env
        return
    for folder in (PROJECT_ROOT, *folders):
        env = Path(folder) / ".env"
        if env.is_file():
            load_dotenv(env, override=False)


def provider_default_base(model: str) -> str | None:
    """The base URL a provider uses when none is set: a local server for Ollama and friends, else None (its cloud)."""
    return _LOCAL_DEFAULT_BASE.get(model.split("/", 1)[0])


def resolve_endpoint(spec: LMSpec) -> Endpoint:
    """The model string and the base URL litellm will use for ``spec`` (see the module docstring)."""
    if spec.model == LOCAL_MODEL:
        return local_endpoint()
    if "/" not in spec.model:
        raise LMSetupError(
            f"model string {spec.model!r} needs a provider prefix, e.g. 'openai/gpt-4o-mini', "
            "'anthropic/claude-3-5-haiku-latest', 'ollama_chat/llama3.1' (or use 'local')"
        )
    if spec.api_base:
        return Endpoint(spec.model, spec.api_base)
    provider = spec.model.split("/", 1)[0]
    names = _BASE_ENV.get(provider) or (f"{provider.upper()}_API_BASE", f"{provider.upper()}_BASE_URL")
    for name in names:
        if value := os.environ.get(name, "").strip():
            return Endpoint(spec.model, value)
    return Endpoint(spec.model, _LOCAL_DEFAULT_BASE.get(provider))


def is_local(endpoint: Endpoint, policy: PrivacyPolicy) -> bool:
    """Loopback and not declared remote (a tunnel or proxy on loopback forwards elsewhere)."""
    if not endpoint.api_base or not is_loopback_url(endpoint.api_base):
        return False
    return not _matches(endpoint, policy.remote_endpoints)


def is_approved(endpoint: Endpoint, policy: PrivacyPolicy) -> bool:
    return _matches(endpoint, policy.approved_endpoints)


def _matches(endpoint: Endpoint, patterns: Sequence[str]) -> bool:
    """A pattern matches the model string or the base URL (shell-style wildcards).

    URLs are compared normalised (``clinsynth.data.privacy.url_matches``): a tunnel declared
    remote as ``http://127.0.0.1:18090/*`` stays remote when reached as ``HTTP://localhost:18090``.
    """
    return endpoint_matches(endpoint.model, endpoint.api_base, patterns)


def _bypasses_proxy(host: str, port: str | None, no_proxy: str) -> bool:
    """Does ``NO_PROXY`` send requests to ``host`` directly, as httpx (litellm's client) reads it?

    Entries are compared literally (``localhost`` does not cover ``127.0.0.1``; no CIDR
    ranges), ``.example.org`` covers subdomains only, ``example.org`` the domain too, and
    ``*`` everything. Where httpx's reading is in doubt, the answer is no: a proxy that is
    assumed and bypassed costs a refusal, a bypass assumed and not made would leak.
    """
    host = host.lower().strip("[]")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        if not entry:
            continue
        if "://" in entry:
            entry = entry.split("://", 1)[1]
        entry = entry.rstrip("/")
        entry_port = None
        if entry.startswith("["):
            entry, _, after = entry[1:].partition("]")
            entry_port = after[1:] or None
        elif entry.count(":") == 1:
            entry, entry_port = entry.split(":")
        if entry_port is not None and entry_port != port:
            continue
        if entry.startswith("."):
            if host.endswith(entry):
                return True
        elif host == entry or host.endswith("." + entry):
            return True
    return False


def _public_url(url: str) -> str:
    """``url`` without a password, for messages (proxy URLs often carry credentials)."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return f"{scheme}{sep}{netloc.rsplit('@', 1)[-1]}{slash}{path}" if sep else url.rsplit("@", 1)[-1]


def proxies_for(endpoint: Endpoint) -> list[tuple[str, str]]:
    """(variable, proxy URL) of each proxy the environment sets for ``endpoint``'s requests.

    ``<SCHEME>_PROXY`` and ``ALL_PROXY`` in any case, unless ``NO_PROXY`` (any case) covers
    the endpoint's host. A provider's default endpoint (no base URL) is an HTTPS cloud API
    whose host we do not know, so only ``NO_PROXY=*`` bypasses its proxy.
    """
    from urllib.parse import urlparse

    url = endpoint.api_base or "https://"
    parsed = urlparse(url if "://" in url else f"http://{url}")
    scheme = (parsed.scheme or "http").lower()
    names = {f"{scheme}_proxy", "all_proxy"}
    found = [(k, v.strip()) for k, v in sorted(os.environ.items()) if k.lower() in names and v.strip()]
    if not found:
        return []
    no_proxy = ",".join(v for k, v in os.environ.items() if k.lower() == "no_proxy")
    try:
        port = str(parsed.port) if parsed.port else None
    except ValueError:
        port = None
    host = (parsed.hostname or "") if endpoint.api_base else ""
    if _bypasses_proxy(host, port, no_proxy):
        return []
    return found


def unapproved_proxy(endpoint: Endpoint, policy: PrivacyPolicy) -> tuple[str, str] | None:
    """A proxy (variable, URL) that would carry ``endpoint``'s requests and is itself neither local nor approved.

    A proxy is an endpoint: it reads every request body sent over plain HTTP (and a
    TLS-inspecting one over HTTPS), so private data may pass one only where it may go.
    """
    for name, url in proxies_for(endpoint):
        proxy = Endpoint(endpoint.model, url if "://" in url else f"http://{url}")
        if not (is_local(proxy, policy) or _matches(Endpoint("", proxy.api_base), policy.approved_endpoints)):
            return name, url
    return None


def may_receive_private(endpoint: Endpoint, policy: PrivacyPolicy) -> bool:
    """Local or approved, and no unapproved proxy on the way."""
    return (is_local(endpoint, policy) or is_approved(endpoint, policy)) and unapproved_proxy(endpoint, policy) is None


def has_demos(program: Any) -> bool:
    """Does the program carry examples into its prompts (demos, or a kNN demo pool)?"""
    return bool(getattr(program, "demo_pool", None)) or any(p.demos for p in program.predictors())


def text_key(text: str) -> str:
    """A sentence's hash for comparing demos with gold: whitespace and case do not tell them apart."""
    return hashlib.sha256(" ".join(text.split()).casefold().encode("utf-8")).hexdigest()


_GOLD_KEYS: dict[tuple[Any, ...], frozenset[str]] = {}


def gold_text_keys(policy: PrivacyPolicy) -> frozenset[str]:
    """``text_key`` of every sentence in the gold files (``<gold>/*.jsonl``) of the task ``policy`` belongs to.

    Empty when the policy names no task file. Lines are read leniently (the gold loader
    validates them elsewhere): any ``text`` counts, so a bad line cannot hide a sentence.
    """
    if policy.source is None:
        return frozenset()
    from clinsynth.data.task import load_task

    gold_dir = load_task(policy.source).gold_dir
    files = sorted(gold_dir.glob("*.jsonl")) if gold_dir.is_dir() else []
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if stamp not in _GOLD_KEYS:
        keys: set[str] = set()
        for path in files:
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                        keys.add(text_key(obj["text"]))
        _GOLD_KEYS[stamp] = frozenset(keys)
    return _GOLD_KEYS[stamp]


def demo_texts(program: Any) -> list[str]:
    """Every string a program's demos (and kNN demo pool) put into prompts, list items included."""
    demos = [d for p in program.predictors() for d in p.demos] + list(getattr(program, "demo_pool", None) or [])
    texts: list[str] = []
    for demo in demos:
        values = demo.toDict() if hasattr(demo, "toDict") else dict(demo)
        for value in values.values():
            items = value if isinstance(value, (list, tuple)) else [value]
            texts += [v for v in items if isinstance(v, str)]
    return texts


def program_demo_source(program: Any, gold_keys: frozenset[str] = frozenset()) -> DemoSource:
    """Where ``program``'s demos came from, judged by their content first.

    Demos that are gold sentences (``gold_keys``, see ``gold_text_keys``) are private
    whatever the file's metadata says: a ``demos_from`` edited to "public" must not send
    them out. Otherwise the recorded source, or private for demos of unknown origin.
    """
    if not has_demos(program):
        return NO_DEMOS
    recorded = getattr(program, "demos_from", None)
    if gold_keys:
        in_gold = sum(text_key(t) in gold_keys for t in demo_texts(program))
        if in_gold and not (isinstance(recorded, DemoSource) and recorded.sensitivity is Sensitivity.PRIVATE):
            return DemoSource(f"{in_gold} gold sentences of the task, whatever the file's metadata says",
                              Sensitivity.PRIVATE)  # fmt: skip
    if isinstance(recorded, DemoSource):
        return recorded
    return DemoSource("demos of unknown origin", Sensitivity.PRIVATE)


def private_contents(
    data: Sequence[Content], programs: Mapping[str, Any], gold_keys: frozenset[str] = frozenset()
) -> list[str]:
    """Human-readable names of everything private among the data and the programs' demos."""
    names = [c.name for c in data if c.sensitivity is Sensitivity.PRIVATE]
    for name, program in programs.items():
        if program is None:
            continue
        source = program_demo_source(program, gold_keys)
        if source.sensitivity is Sensitivity.PRIVATE:
            names.append(f"program {name} (its demos come from {source.data})")
    return names


def _gold_keys_if_demos(policy: PrivacyPolicy, programs: Mapping[str, Any]) -> frozenset[str]:
    # Reading the gold costs a file scan: only programs with demos need it.
    if any(p is not None and has_demos(p) for p in programs.values()):
        return gold_text_keys(policy)
    return frozenset()


def check_privacy(
    endpoint: Endpoint, role: str, policy: PrivacyPolicy, data: Sequence[Content], programs: Mapping[str, Any]
) -> bool:
    """Raise PrivacyError if private content may not go to ``endpoint``; True if private content is cleared."""
    private = private_contents(data, programs, _gold_keys_if_demos(policy, programs))
    if not private:
        return False
    where = policy.source or "the task's clinsynth.toml"
    if is_local(endpoint, policy) or is_approved(endpoint, policy):
        proxy = unapproved_proxy(endpoint, policy)
        if proxy is None:
            return True
        name, url = proxy
        shown = _public_url(url)
        raise PrivacyError(
            f"refusing to send private data to '{endpoint.describe()}' (role {role}) through the proxy {shown} "
            f"set by the environment variable {name}: {'; '.join(private)}. A proxy receives every request: "
            f"unset {name}, add the endpoint's host to NO_PROXY, or approve the proxy in [privacy] "
            f'approved_endpoints in {where}, e.g. approved_endpoints = ["{shown}"]'
        )
    example = endpoint.api_base or endpoint.model
    raise PrivacyError(
        f"refusing to send private data to remote endpoint '{endpoint.describe()}' (role {role}): "
        f"{'; '.join(private)}. Private data only goes to local endpoints unless approved: add the endpoint "
        f'to [privacy] approved_endpoints in {where}, e.g. approved_endpoints = ["{example}"]'
    )


def gate(
    spec: LMSpec,
    role: str,
    policy: PrivacyPolicy,
    data: Sequence[Content] = (),
    programs: Mapping[str, Any] | None = None,
    env_folders: Sequence[Path] = (),
) -> tuple[Endpoint, bool]:
    """The privacy check alone (``.env`` read, endpoint resolved): for steps that decide before opening an LM."""
    load_env_files(*env_folders)
    endpoint = resolve_endpoint(spec)
    return endpoint, check_privacy(endpoint, role, policy, data, programs or {})


def open_lm(
    spec: LMSpec,
    role: str,
    policy: PrivacyPolicy,
    data: Sequence[Content] = (),
    programs: Mapping[str, Any] | None = None,
    env_folders: Sequence[Path] = (),
    **options: Any,
) -> LMHandle:
    """An LM for ``role``, after the privacy check on ``data`` and ``programs`` (name -> DSPy module).

    ``options`` go to ``clinsynth.llm.lm.make_lm`` (temperature, timeout, adapter...). The
    returned handle remembers whether private content was cleared, so a program added
    later can be checked with ``admit(handle, name, program)``.
    """
    endpoint, cleared = gate(spec, role, policy, data, programs, env_folders)
    handle = make_lm(spec.model, api_base=endpoint.api_base if spec.model != LOCAL_MODEL else None, **options)
    return replace(handle, role=role, policy=policy, private_cleared=cleared or may_receive_private(endpoint, policy))


def admit(handle: LMHandle, name: str, program: Any) -> None:
    """Refuse a program whose demos are private when ``handle`` was not cleared for private data.

    Every step calls this for each program it runs on a handle, so a handle built outside
    ``open_lm`` (never cleared) is checked for each one.
    """
    if handle.private_cleared:
        return
    check_privacy(handle.endpoint, handle.role, handle.policy or PrivacyPolicy(), (), {name: program})

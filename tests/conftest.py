"""Shared fixtures: isolated DSPy settings and cache, a small taxonomy, a fake OpenAI server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dspy
import pytest

TWO_CATEGORY_YAML = """
name: mini
title: Mini taxonomy
general_rules:
  - Negated findings are NONE.
categories:
  - name: FEVER
    definition: The patient has a fever.
    examples:
      - text: "Temperature 39.2 C."
        labels: [FEVER]
  - name: COUGH
    definition: The patient coughs.
    exclude: ["Denies cough."]
"""


@pytest.fixture(autouse=True)
def isolated_dspy(tmp_path: Path) -> Iterator[None]:
    """Each test gets default DSPy settings and a fresh in-memory cache (nothing on disk)."""
    saved_cache = dspy.cache
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    with dspy.context(lm=None, adapter=None):
        yield
    dspy.cache = saved_cache


@pytest.fixture
def mini_taxonomy_path(tmp_path: Path) -> Path:
    path = tmp_path / "mini.yaml"
    path.write_text(TWO_CATEGORY_YAML)
    return path


class FakeOpenAI:
    """A loopback OpenAI-compatible chat server whose replies a test scripts.

    ``reply(body)`` returns ``(status, payload)`` or ``(status, payload, headers)``; a
    ``bytes`` payload is sent as is (a malformed response), anything else as JSON. A reply
    may also sleep (a hanging endpoint): each request is served on its own thread.
    """

    def __init__(self, reply: Callable[[dict], tuple]) -> None:
        self.reply = reply
        self.requests: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append(body)
                status, payload, *extra = fake.reply(body)
                headers = extra[0] if extra else {}
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client gave up waiting (a timeout test)
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def chat_reply(content: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": "fake",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


@pytest.fixture
def fake_openai() -> type[FakeOpenAI]:
    return FakeOpenAI


@pytest.fixture(scope="session")
def mini_trained(tmp_path_factory: pytest.TempPathFactory):
    """One tiny SetFit classifier on the two-category taxonomy, shared by the tests that need one."""
    from clinsynth.data.taxonomy import load_taxonomy
    from clinsynth.model.classifier import SignsClassifier, TrainingBudget
    from tests.mini_data import records

    path = tmp_path_factory.mktemp("tax") / "mini.yaml"
    path.write_text(TWO_CATEGORY_YAML)
    taxonomy = load_taxonomy(path)
    train = records("train") + records("dev") + records("test")
    # The default (end-to-end) recipe, with a learning rate that fits 26 sentences in a few steps.
    budget = TrainingBudget(epochs=12, batch_size=8, learning_rate=2e-4, head_learning_rate=2e-2, patience=12)
    classifier = SignsClassifier.train(train, taxonomy, dev=records("dev"), budget=budget, show_progress=False)
    return taxonomy, train, classifier


def write_task(
    root: Path,
    taxonomy: Path | None = None,
    gold: Path | None = None,
    approved: tuple[str, ...] = (),
    remote: tuple[str, ...] = (),
    labeler: tuple[str, str | None] = ("local", None),
    extra: str = "",
) -> Path:
    """A task folder (``clinsynth.toml``) on the bundled AD taxonomy and gold unless told otherwise."""
    from clinsynth.paths import PROJECT_ROOT

    root.mkdir(parents=True, exist_ok=True)
    data = PROJECT_ROOT / "data"
    bundled = PROJECT_ROOT / "tasks" / "ad_signs"
    model, api_base = labeler
    lines = [
        'name = "test_task"',
        f'taxonomy = "{taxonomy or bundled / "taxonomy.yaml"}"',
        f'gold = "{gold or bundled / "gold"}"',
        f'corpus = "{data / "corpus" / "mtsamples.csv.gz"}"',
        f'compiled = "{root / "compiled"}"',
        "[lm.labeler]",
        f'model = "{model}"',
        *([f'api_base = "{api_base}"'] if api_base else []),
        "[privacy]",
        f"approved_endpoints = {json.dumps(list(approved))}",
        f"remote_endpoints = {json.dumps(list(remote))}",
        extra,
    ]
    (root / "clinsynth.toml").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    """A task folder on the bundled AD data whose compiled-program folder is empty."""
    return write_task(tmp_path / "task")


def ad_task():
    """The bundled AD task (tasks/ad_signs)."""
    from clinsynth.data.task import BUNDLED_TASK, load_task

    return load_task(BUNDLED_TASK)


def ad_taxonomy():
    return ad_task().taxonomy

"""The privacy gate: nothing private reaches an endpoint that is not local or approved, by any path.

A loopback fake OpenAI server stands in for a remote endpoint: the test task declares its
URL remote (``[privacy] remote_endpoints``, as a user would for an SSH tunnel), so the
gate must treat it as a cloud API. "Refused" means the server saw zero requests.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clinsynth.programs import label as label_cli
from clinsynth.programs.data_to_label import DataToLabel

from clinsynth.data.privacy import Endpoint, Sensitivity
from clinsynth.data.task import LMSpec, PrivacyPolicy, load_task
from clinsynth.errors import DataError, PrivacyError
from clinsynth.llm.session import Content, DemoSource, check_privacy, is_local, program_demo_source, resolve_endpoint
from clinsynth.paths import PROJECT_ROOT
from tests.conftest import ad_taxonomy, chat_reply, write_task

COMPILED_LABELLER = PROJECT_ROOT / "tasks" / "ad_signs" / "compiled" / "data_to_label.local.json"
GOLD_DEV = PROJECT_ROOT / "tasks" / "ad_signs" / "gold" / "dev.jsonl"
ANSWER = json.dumps({"categories": ["COGNITIVE_IMPAIRMENT"]})


@pytest.mark.parametrize(
    "endpoint, local",
    [
        (Endpoint("openai/qwen", "http://127.0.0.1:8080/v1"), True),
        (Endpoint("openai/qwen", "http://localhost:8000/v1"), True),
        (Endpoint("openai/qwen", "http://[::1]:8000/v1"), True),
        (Endpoint("openai/gpt-4o-mini"), False),
        (Endpoint("anthropic/claude-3-5-haiku-latest"), False),
        (Endpoint("openai/llama", "http://10.0.0.5:8000/v1"), False),
        (Endpoint("ollama_chat/llama3.1", "https://ollama.example.org"), False),
    ],
)
def test_endpoints_are_local_only_on_loopback(endpoint: Endpoint, local: bool):
    assert is_local(endpoint, PrivacyPolicy()) is local


def test_a_loopback_url_declared_remote_is_remote():
    policy = PrivacyPolicy(remote_endpoints=("http://127.0.0.1:9999/*",))
    assert not is_local(Endpoint("openai/x", "http://127.0.0.1:9999/v1"), policy)
    assert is_local(Endpoint("openai/x", "http://127.0.0.1:8000/v1"), policy)


def test_the_endpoint_is_the_base_url_litellm_would_use(monkeypatch, tmp_path: Path):
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OLLAMA_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    assert resolve_endpoint(LMSpec("openai/gpt-4o-mini")) == Endpoint("openai/gpt-4o-mini", None)
    assert resolve_endpoint(LMSpec("ollama_chat/llama3.1")).api_base == "http://localhost:11434"
    monkeypatch.setenv("OLLAMA_API_BASE", "https://ollama.example.org")
    assert not is_local(resolve_endpoint(LMSpec("ollama_chat/llama3.1")), PrivacyPolicy())
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    assert is_local(resolve_endpoint(LMSpec("openai/served")), PrivacyPolicy())
    # An explicit api_base wins over the environment.
    assert resolve_endpoint(LMSpec("openai/x", "https://api.example.com/v1")).api_base == "https://api.example.com/v1"


def test_private_data_and_private_demos_are_named_in_the_refusal():
    program = DataToLabel(ad_taxonomy())
    program.label.demos = [{"sentence": "gold sentence", "categories": []}]
    remote = Endpoint("openai/gpt-4o-mini")
    with pytest.raises(PrivacyError) as err:
        public = [Content("notes.txt", Sensitivity.PUBLIC)]
        check_privacy(remote, "labeler", PrivacyPolicy(), public, {"p.json": program})
    message = str(err.value)
    assert "program p.json" in message and "unknown origin" in message and "openai/gpt-4o-mini" in message
    with pytest.raises(PrivacyError, match="gold dev"):
        check_privacy(remote, "labeler", PrivacyPolicy(), [Content("gold dev", Sensitivity.PRIVATE)], {})
    # Demos recorded as synthetic, public data, or a local endpoint: nothing to refuse.
    program.demos_from = DemoSource("generated sentences", Sensitivity.SYNTHETIC)
    assert program_demo_source(program).sensitivity is Sensitivity.SYNTHETIC
    check_privacy(remote, "labeler", PrivacyPolicy(), [Content("corpus", Sensitivity.PUBLIC)], {"p": program})
    check_privacy(Endpoint("openai/q", "http://127.0.0.1:1/v1"), "labeler", PrivacyPolicy(),
                  [Content("gold", Sensitivity.PRIVATE)], {})  # fmt: skip


def test_the_committed_labeller_carries_gold_demos_and_counts_as_private():
    program = DataToLabel(ad_taxonomy())
    from clinsynth.llm.compiled import load_compiled

    load_compiled(program, COMPILED_LABELLER, program.taxonomy)
    assert program_demo_source(program).sensitivity is Sensitivity.PRIVATE


def _public_file(tmp_path: Path) -> Path:
    path = tmp_path / "public.txt"
    path.write_text("She forgets names.\nThe wound is clean.\n")
    return path


def _label(task: Path, server_base: str, out: Path, *extra: str) -> int:
    return label_cli.main(
        ["--task", str(task), "--lm", "openai/fake", "--api-base", server_base, "--out", str(out),
         "--no-progress", "--no-parquet", "--attempts", "1", *extra]
    )  # fmt: skip


def test_remote_endpoint_gets_no_gold_and_no_gold_demos_until_approved(tmp_path: Path, fake_openai, capsys):
    with fake_openai(lambda body: (200, chat_reply(ANSWER))) as server:
        remote = (server.api_base.rsplit("/", 1)[0] + "/*",)
        task = write_task(tmp_path / "task", remote=remote)
        # (a) gold itself.
        code = _label(task, server.api_base, tmp_path / "a.jsonl", "--input", str(GOLD_DEV), "--limit", "2",
                      "--zero-shot")  # fmt: skip
        assert code == 2 and "refusing to send private data" in capsys.readouterr().err
        # (b) a public file, but the program's demos are gold sentences.
        code = _label(task, server.api_base, tmp_path / "b.jsonl", "--input", str(_public_file(tmp_path)),
                      "--sensitivity", "public", "--program", str(COMPILED_LABELLER))  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "data_to_label.local.json" in err and "demos" in err
        assert server.requests == []
        assert not (tmp_path / "a.jsonl").exists() and not (tmp_path / "b.jsonl").exists()

        # A public file with the zero-shot program is fine.
        code = _label(task, server.api_base, tmp_path / "c.jsonl", "--input", str(_public_file(tmp_path)),
                      "--sensitivity", "public", "--zero-shot")  # fmt: skip
        assert code == 0 and len(server.requests) >= 2
        before = len(server.requests)

        # Once the endpoint is approved, gold and the gold-demo program go through.
        approved = write_task(tmp_path / "approved", remote=remote, approved=remote)
        code = _label(approved, server.api_base, tmp_path / "d.jsonl", "--input", str(_public_file(tmp_path)),
                      "--sensitivity", "public", "--program", str(COMPILED_LABELLER))  # fmt: skip
        assert code == 0 and len(server.requests) > before
        demo = _first_demo_sentence()
        assert all(demo not in json.dumps(r) for r in server.requests[:before])
        assert any(demo in json.dumps(r) for r in server.requests[before:])


def _first_demo_sentence() -> str:
    state = json.loads(COMPILED_LABELLER.read_text())
    demos = [d for key, value in state.items() if isinstance(value, dict) for d in value.get("demos", [])]
    return demos[0]["sentence"]


def test_the_environment_base_url_is_checked_not_just_flags(tmp_path: Path, fake_openai, monkeypatch, capsys):
    """OPENAI_BASE_URL (here from the task's .env) decides where litellm sends requests."""
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, "x")  # so that monkeypatch restores the variable .env is about to set
        monkeypatch.delenv(name)
    with fake_openai(lambda body: (200, chat_reply(ANSWER))) as server:
        task = write_task(tmp_path / "task", remote=(server.api_base.rsplit("/", 1)[0] + "/*",))
        (task / ".env").write_text(f"OPENAI_BASE_URL={server.api_base}\nOPENAI_API_KEY=sk-test\n")
        code = label_cli.main(["--task", str(task), "--lm", "openai/fake", "--input", str(GOLD_DEV), "--limit", "1",
                               "--out", str(tmp_path / "o.jsonl"), "--zero-shot", "--no-progress"])  # fmt: skip
        assert code == 2 and server.requests == []
    assert "127.0.0.1" in capsys.readouterr().err


def test_a_remote_model_string_stops_before_any_network_attempt(tmp_path: Path, monkeypatch, capsys):
    """The done-when command: a gold-demo program with a cloud model stops at once."""
    def no_lm(*args, **kwargs):
        raise AssertionError("an LM was built")

    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)

    monkeypatch.setattr("clinsynth.llm.session.make_lm", no_lm)
    code = label_cli.main(["--input", str(_public_file(tmp_path)), "--sensitivity", "public", "--program",
                           str(COMPILED_LABELLER), "--lm", "openai/gpt-4o-mini",
                           "--out", str(tmp_path / "o.jsonl")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "refusing to send private data" in err and "openai/gpt-4o-mini" in err


# Parsed in a child process: CPython 3.11's ast module can fail with "AST constructor recursion
# depth mismatch" in a process where a RecursionError was caught before (tests provoke some).
_CALL_SCAN = """
import ast, json, sys
from pathlib import Path
root, calls = Path(sys.argv[1]), []
for folder in ("src", "programs", "evals", "benchmarks", "signatures"):
    for path in sorted((root / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("make_lm", "LM"):
                    calls.append([path.relative_to(root).as_posix(), node.lineno, name])
print(json.dumps(calls))
"""


def test_only_the_session_builds_lms():
    """No module but clinsynth.llm.session calls make_lm, and nothing but clinsynth.llm.lm builds a dspy.LM."""
    import subprocess
    import sys

    scan = subprocess.run([sys.executable, "-c", _CALL_SCAN, str(PROJECT_ROOT)], capture_output=True, text=True,
                          check=True)  # fmt: skip
    calls = json.loads(scan.stdout)
    # the scan sees calls
    assert any(rel == "src/clinsynth/llm/session.py" for rel, _, name in calls if name == "make_lm")
    home = {"make_lm": "src/clinsynth/llm/session.py", "LM": "src/clinsynth/llm/lm.py"}
    assert [f"{rel}:{line} {name}" for rel, line, name in calls if rel != home[name]] == []


def test_bad_privacy_config_names_the_file_and_field(tmp_path: Path):
    task = write_task(tmp_path / "t")
    toml = task / "clinsynth.toml"
    toml.write_text(toml.read_text().replace("approved_endpoints = []", 'approved_endpoints = "openai/*"'))
    with pytest.raises(DataError, match=r"clinsynth.toml: field 'privacy.approved_endpoints'"):
        load_task(task)


@pytest.mark.parametrize(
    "api_base",
    [
        "http://localhost:18090/v1",
        "HTTP://127.0.0.1:18090/v1",
        "http://127.0.0.1:18090",
        "http://127.0.0.1:18090/",
        "http://[::1]:18090/v1/",
        "http://LocalHost:18090/v1",
    ],
)
def test_a_tunnel_declared_remote_stays_remote_however_its_url_is_spelled(api_base: str):
    """Issue 26 row 3: scheme, host (loopback aliases), port and path are normalised before matching."""
    policy = PrivacyPolicy(remote_endpoints=("http://127.0.0.1:18090/*",))
    endpoint = Endpoint("openai/x", api_base)
    assert not is_local(endpoint, policy)
    with pytest.raises(PrivacyError):
        check_privacy(endpoint, "labeler", policy, [Content("gold", Sensitivity.PRIVATE)], {})
    # Another port on loopback is still local; default ports count when left out.
    assert is_local(Endpoint("openai/x", "http://localhost:18091/v1"), policy)
    by_default_port = PrivacyPolicy(remote_endpoints=("http://localhost/v1",))
    assert not is_local(Endpoint("openai/x", "http://127.0.0.1:80"), by_default_port)


def test_approved_endpoints_match_after_the_same_normalisation():
    policy = PrivacyPolicy(approved_endpoints=("https://llm.example.org/v1",))
    for api_base in ("https://LLM.example.org", "https://llm.example.org:443/v1/", "HTTPS://llm.example.org/v1"):
        check_privacy(Endpoint("openai/x", api_base), "labeler", policy, [Content("gold", Sensitivity.PRIVATE)], {})
    for api_base in ("http://llm.example.org/v1", "https://llm.example.org:8443/v1", "https://evil.example.org/v1"):
        with pytest.raises(PrivacyError):
            check_privacy(Endpoint("openai/x", api_base), "labeler", policy, [Content("gold", Sensitivity.PRIVATE)], {})


def _no_proxies(monkeypatch) -> None:
    import os

    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name)


def test_a_proxy_in_the_environment_is_an_endpoint(monkeypatch):
    """Issue 26 row 2: HTTP_PROXY / ALL_PROXY (any case) would carry private text to the proxy."""
    _no_proxies(monkeypatch)
    gold = [Content("gold", Sensitivity.PRIVATE)]
    loopback = Endpoint("openai/x", "http://127.0.0.1:8000/v1")
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://user:secret@proxy.example.org:3128")
        with pytest.raises(PrivacyError) as err:
            check_privacy(loopback, "labeler", PrivacyPolicy(), gold, {})
        assert name in str(err.value) and "proxy.example.org:3128" in str(err.value)
        assert "secret" not in str(err.value)
        # Public data may go through it; the HTTPS proxy variable does not apply to http://.
        check_privacy(loopback, "labeler", PrivacyPolicy(), [Content("corpus", Sensitivity.PUBLIC)], {})
        monkeypatch.delenv(name)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example.org:3128")
    check_privacy(loopback, "labeler", PrivacyPolicy(), gold, {})
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.org:3128")
    # NO_PROXY covering the endpoint's host (as written: localhost does not cover 127.0.0.1).
    for no_proxy, bypassed in (("localhost", False), ("127.0.0.1", True), ("example.org,127.0.0.1:8000", True),
                               ("127.0.0.1:9000", False), ("*", True), ("127.0.0.0/8", False)):  # fmt: skip
        monkeypatch.setenv("no_proxy", no_proxy)
        if bypassed:
            check_privacy(loopback, "labeler", PrivacyPolicy(), gold, {})
        else:
            with pytest.raises(PrivacyError, match="HTTP_PROXY"):
                check_privacy(loopback, "labeler", PrivacyPolicy(), gold, {})
    monkeypatch.delenv("no_proxy")
    # An approved proxy, or one on loopback that is not declared remote, may carry private data.
    check_privacy(loopback, "labeler", PrivacyPolicy(approved_endpoints=("http://proxy.example.org:3128",)), gold, {})
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    check_privacy(loopback, "labeler", PrivacyPolicy(), gold, {})
    with pytest.raises(PrivacyError, match="HTTP_PROXY"):
        check_privacy(loopback, "labeler", PrivacyPolicy(remote_endpoints=("http://localhost:3128",)), gold, {})


def test_a_proxy_declared_remote_gets_no_gold(tmp_path: Path, fake_openai, monkeypatch, capsys):
    """End to end: the proxy (a logging fake, declared remote) sees no request, and the message names the variable."""
    _no_proxies(monkeypatch)
    with fake_openai(lambda body: (200, chat_reply(ANSWER))) as server, \
            fake_openai(lambda body: (200, chat_reply(ANSWER))) as proxy:  # fmt: skip
        proxy_url = proxy.api_base.rsplit("/", 1)[0]
        task = write_task(tmp_path / "task", remote=(proxy_url + "/*",))
        monkeypatch.setenv("http_proxy", proxy_url)
        code = _label(task, server.api_base, tmp_path / "a.jsonl", "--input", str(GOLD_DEV), "--limit", "1",
                      "--zero-shot")  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "http_proxy" in err
        assert proxy.requests == [] and server.requests == []
        assert not (tmp_path / "a.jsonl").exists()


def _program_with(tmp_path: Path, **label_state: object) -> Path:
    """The committed labeller with extra state on its predictor (as a hostile or careless file would carry)."""
    state = json.loads(COMPILED_LABELLER.read_text())
    state["label"].update(label_state)
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(state))
    return path


def test_a_compiled_program_never_chooses_the_endpoint(tmp_path: Path):
    """Issue 26 row 1: LM settings in a program file (config.api_base, a saved lm) are refused, naming file and key."""
    from clinsynth.programs.labellers import load_labeller

    taxonomy = ad_taxonomy()
    crafted = _program_with(tmp_path, config={"api_base": "http://127.0.0.1:9/v1"})
    with pytest.raises(DataError, match=r"crafted.json: field 'label.config'"):
        load_labeller(taxonomy, crafted)
    crafted = _program_with(tmp_path, lm={"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"})
    with pytest.raises(DataError, match=r"crafted.json: field 'label.lm'"):
        load_labeller(taxonomy, crafted)
    # The committed file (lm: null, no config) loads, and its predictor has no LM of its own.
    assert load_labeller(taxonomy, COMPILED_LABELLER).label.lm is None


def test_a_program_file_with_an_api_base_sends_nothing_anywhere(tmp_path: Path, fake_openai, capsys):
    """End to end: gold to a local endpoint with a program whose config names another (remote) address."""
    with fake_openai(lambda body: (200, chat_reply(ANSWER))) as local, \
            fake_openai(lambda body: (200, chat_reply(ANSWER))) as elsewhere:  # fmt: skip
        task = write_task(tmp_path / "task", remote=(elsewhere.api_base.rsplit("/", 1)[0] + "/*",))
        crafted = _program_with(tmp_path, config={"api_base": elsewhere.api_base, "api_key": "sk-x"})
        code = _label(task, local.api_base, tmp_path / "a.jsonl", "--input", str(GOLD_DEV), "--limit", "1",
                      "--program", str(crafted))  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "crafted.json" in err and "label.config" in err
        assert elsewhere.requests == [] and local.requests == []


def test_gold_demos_are_private_whatever_the_metadata_says(tmp_path: Path, fake_openai, capsys):
    """Issue 26 row 4: a ``demos_from`` edited to "public" does not send gold demos to a remote endpoint."""
    state = json.loads(COMPILED_LABELLER.read_text())
    state["metadata"]["clinsynth"]["demos_from"] = {"data": "public corpus", "sensitivity": "public"}
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(state))
    with fake_openai(lambda body: (200, chat_reply(ANSWER))) as server:
        task = write_task(tmp_path / "task", remote=(server.api_base.rsplit("/", 1)[0] + "/*",))
        code = _label(task, server.api_base, tmp_path / "a.jsonl", "--input", str(_public_file(tmp_path)),
                      "--sensitivity", "public", "--program", str(edited))  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and "edited.json" in err and "gold sentences" in err
        assert server.requests == []
    # Demos recorded public that are not gold sentences stay public.
    program = DataToLabel(ad_taxonomy())
    program.label.demos = [{"sentence": "A sentence written for this test.", "categories": []}]
    program.demos_from = DemoSource("generated sentences", Sensitivity.SYNTHETIC)
    policy = load_task(task).privacy
    check_privacy(Endpoint("openai/gpt-4o-mini"), "labeler", policy, [], {"p": program})
    # The same program with one gold sentence (spaced and cased differently) among its demos is private.
    gold = json.loads(GOLD_DEV.read_text().splitlines()[0])["text"]
    program.label.demos.append({"sentence": "  " + gold.upper(), "categories": []})
    with pytest.raises(PrivacyError, match="1 gold sentences"):
        check_privacy(Endpoint("openai/gpt-4o-mini"), "labeler", policy, [], {"p": program})


def test_an_lm_handle_is_immutable_and_cleared_only_by_the_session():
    """Issue 27: private_cleared defaulted to True and was set after construction (fail-open)."""
    import dataclasses

    from clinsynth.llm.lm import LMHandle

    handle = LMHandle(lm=None, adapter=None, endpoint=Endpoint("openai/gpt-4o-mini"), name="remote")
    assert handle.private_cleared is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        handle.private_cleared = True  # type: ignore[misc]

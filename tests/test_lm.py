import hashlib
import importlib
import sys
import types
from pathlib import Path

import pytest

from clinsynth.errors import LMSetupError
from clinsynth.llm import lm


@pytest.fixture
def fake_parts(tmp_path: Path, monkeypatch):
    """Three small 'part' packages standing in for the 22 model chunks."""
    chunks = [b"GGUF" + bytes([i]) * 1000 for i in range(3)]
    whole = b"".join(chunks)
    for i, chunk in enumerate(chunks, 1):
        part = tmp_path / f"part{i:02d}.bin"
        part.write_bytes(chunk)
        module = types.ModuleType(f"fakepart{i}")
        module.get_part_path = lambda p=part: str(p)
        monkeypatch.setitem(sys.modules, f"fakepart{i}", module)
    monkeypatch.setattr(lm, "_PART_PACKAGE", "fakepart{}")
    monkeypatch.setattr(lm, "GGUF_PARTS", 3)
    monkeypatch.setattr(lm, "GGUF_SIZE", len(whole))
    monkeypatch.setattr(lm, "GGUF_SHA256", hashlib.sha256(whole).hexdigest())
    return whole


def test_model_is_assembled_in_order_verified_and_reused(tmp_path: Path, fake_parts: bytes):
    cache = tmp_path / "cache"
    path = lm.ensure_local_model(cache)
    assert path.read_bytes() == fake_parts
    mtime = path.stat().st_mtime_ns
    assert lm.ensure_local_model(cache) == path and path.stat().st_mtime_ns == mtime  # not rebuilt


def test_a_tampered_model_file_is_rebuilt(tmp_path: Path, fake_parts: bytes):
    cache = tmp_path / "cache"
    path = lm.ensure_local_model(cache)
    path.write_bytes(b"garbage")
    assert lm.ensure_local_model(cache).read_bytes() == fake_parts


def test_corrupt_parts_fail_clearly_and_leave_no_file(tmp_path: Path, fake_parts: bytes, monkeypatch):
    monkeypatch.setattr(lm, "GGUF_SHA256", "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(LMSetupError, match="assembled model is corrupt"):
        lm.ensure_local_model(cache)
    assert list(cache.iterdir()) == []


def test_missing_local_extra_says_what_to_install(tmp_path: Path, monkeypatch):
    def fail(name: str):
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", fail)
    with pytest.raises(LMSetupError, match=r"pip install -e '\.\[local\]'"):
        lm.ensure_local_model(tmp_path)


def test_remote_model_strings_make_an_lm_without_starting_a_server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    handle = lm.make_lm("openai/gpt-4o-mini")
    assert handle.name == "openai/gpt-4o-mini" and handle.adapter is None
    assert not handle.endpoint.is_local
    handle = lm.make_lm("openai/served", api_base="http://127.0.0.1:8000/v1", adapter="json")
    assert handle.endpoint.is_local and handle.lm.kwargs["api_base"] == "http://127.0.0.1:8000/v1"
    assert lm._SERVER is None

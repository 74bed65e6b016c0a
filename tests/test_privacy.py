from pathlib import Path

import pytest

from clinsynth.config import Config, load_config
from clinsynth.errors import DataError, PrivacyError
from clinsynth.privacy import Endpoint, Sensitivity, check_send


@pytest.mark.parametrize(
    "endpoint, local",
    [
        (Endpoint("openai/qwen", "http://127.0.0.1:8080/v1"), True),
        (Endpoint("openai/qwen", "http://localhost:8000/v1"), True),
        (Endpoint("openai/qwen", "http://[::1]:8000/v1"), True),
        (Endpoint("ollama_chat/llama3.1"), True),
        (Endpoint("openai/gpt-4o-mini"), False),
        (Endpoint("anthropic/claude-3-5-haiku-latest"), False),
        (Endpoint("openai/llama", "http://10.0.0.5:8000/v1"), False),
        (Endpoint("ollama_chat/llama3.1", "https://ollama.example.org"), False),
    ],
)
def test_endpoints_are_local_only_on_loopback(endpoint: Endpoint, local: bool):
    assert endpoint.is_local is local


def test_private_data_to_a_remote_endpoint_is_refused_with_a_clear_message():
    with pytest.raises(PrivacyError) as err:
        check_send("data/gold/dev.jsonl", Sensitivity.PRIVATE, Endpoint("openai/gpt-4o-mini"), Config())
    message = str(err.value)
    assert "data/gold/dev.jsonl" in message and "openai/gpt-4o-mini" in message
    assert "approved_endpoints" in message


def test_public_synthetic_and_local_pass_the_gate():
    remote = Endpoint("openai/gpt-4o-mini")
    check_send("corpus", Sensitivity.PUBLIC, remote, Config())
    check_send("bronze", Sensitivity.SYNTHETIC, remote, Config())
    check_send("gold", Sensitivity.PRIVATE, Endpoint("openai/q", "http://127.0.0.1:1/v1"), Config())


def test_an_approved_endpoint_in_config_lets_private_data_through(tmp_path: Path):
    cfg = tmp_path / "clinsynth.toml"
    cfg.write_text('[privacy]\napproved_endpoints = ["https://llm.hospital.example/v1/", "azure/*"]\n')
    config = load_config(cfg)
    check_send("gold", Sensitivity.PRIVATE, Endpoint("openai/m", "https://llm.hospital.example/v1"), config)
    check_send("gold", Sensitivity.PRIVATE, Endpoint("azure/gpt-4o"), config)
    with pytest.raises(PrivacyError):
        check_send("gold", Sensitivity.PRIVATE, Endpoint("openai/gpt-4o"), config)


def test_bad_config_names_the_file_and_field(tmp_path: Path):
    cfg = tmp_path / "clinsynth.toml"
    cfg.write_text('[privacy]\napproved_endpoints = "openai/*"\n')
    with pytest.raises(DataError, match=r"clinsynth.toml: field 'privacy.approved_endpoints'"):
        load_config(cfg)
    assert load_config(tmp_path / "absent.toml").approved_endpoints == ()

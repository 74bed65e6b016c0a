"""Fault injection: a loopback endpoint that refuses, fails, rate-limits, hangs, rejects the key
or answers badly; kill -9, two writers on one output, and bad inputs. For each: nothing lost,
nothing duplicated, the right exit code and message, and the time bounded.

Each row of issue 14's table and the tests that cover it (``-`` = this module):

empty input, existing output     test_predict::test_an_input_without_sentences_leaves_an_existing_output_byte_identical
                                 test_records::test_an_input_without_sentences_is_a_data_error (label)
two label runs on one --out      - test_a_second_label_run_on_the_same_out_is_stopped_by_the_lock
two predict runs on one --out    test_predict::test_a_second_run_on_one_output_is_stopped_by_the_lock
connection refused, 20 records   - test_a_refused_port_stops_a_20_sentence_run_fast_and_leaves_no_empty_files
endpoint hangs; --timeout        - test_a_hang_costs_at_most_timeout_times_attempts
                                 - test_an_endpoint_that_hangs_on_every_request_stops_the_run_in_bounded_time
401 / missing API key            - test_a_401_stops_the_run_at_once_without_retries
19 of 20 failed, exit 0          - test_http_500s_are_retried_and_provenance_records_the_sample_used (label)
                                 - test_generate_exits_1_on_failed_calls_unless_max_failures_allows_them
                                 - test_the_main_job_stops_before_the_experiment_when_silver_leaves_failures
invalid UTF-8; a directory       - test_bad_inputs_exit_2_naming_the_file_and_line (label and predict CLIs)
                                 test_records::test_invalid_utf8_is_a_data_error_naming_file_and_line
UTF-8 BOM in CSV and TXT         test_records::test_a_byte_order_mark_is_dropped_from_csv_header_and_txt_first_line
                                 test_predict::test_a_txt_note_with_a_byte_order_mark_and_crlf_reads_like_a_plain_one
TXT with a repeated line         test_records::test_items_without_an_id_are_numbered_by_line_so_sentences_may_repeat
a 100 KB line                    - test_an_over_long_line_reaches_the_endpoint_clipped_with_a_warning
                                 test_predict::test_long_lines_are_clipped_as_label_clips_them_and_notes_per_sentence
duplicate YAML keys              test_taxonomy::test_a_repeated_yaml_key_is_an_error_naming_file_line_and_key
generate --out new_dir/x.jsonl   - test_generate_exits_1_on_failed_calls_unless_max_failures_allows_them
killed run's failures file       - test_kill_9_keeps_the_failures_file_and_a_rerun_resumes
retry temperature in provenance  - test_http_500s_are_retried_and_provenance_records_the_sample_used
429 with Retry-After             - test_a_429_waits_as_long_as_retry_after_asks
malformed, out-of-taxonomy       - test_malformed_and_out_of_taxonomy_answers_are_retried_then_recorded
kill -9, then resume             - test_kill_9_keeps_the_failures_file_and_a_rerun_resumes
                                 test_resume_after_kill::test_killed_run_resumes_without_duplicates_or_losses
export with repeated ids         test_export::test_duplicate_id_dropped

Issue 26 (round two): row, route, and the tests that cover it:

 1  program JSON: config.api_base    test_privacy::test_a_compiled_program_never_chooses_the_endpoint
    or a saved lm state              test_privacy::test_a_program_file_with_an_api_base_sends_nothing_anywhere
 2  HTTP_PROXY / ALL_PROXY set,      test_privacy::test_a_proxy_in_the_environment_is_an_endpoint
    loopback --api-base              test_privacy::test_a_proxy_declared_remote_gets_no_gold
 3  tunnel declared remote reached   test_privacy::test_a_tunnel_declared_remote_stays_remote_however_its_url_is_spelled
    as localhost, HTTP://, no /v1    test_privacy::test_approved_endpoints_match_after_the_same_normalisation
 4  demos_from edited to "public"    test_privacy::test_gold_demos_are_private_whatever_the_metadata_says
                                     test_generate::test_a_labeller_whose_gold_demos_are_recorded_synthetic_is_still_refused
 5  crafted model_head.pkl in a      - test_a_pickle_in_a_model_folder_runs_no_code_unless_trusted
    model folder (predict --model)
 6  label b.txt on a.txt's --out     - test_another_input_on_the_same_out_is_refused_not_skipped
 7  an answer cached from endpoint   - test_an_answer_cached_from_one_endpoint_is_not_served_for_another
    A served for endpoint B
 8  --ray-address 127.0.0.1:1 or     test_engine_ray::test_an_unreachable_ray_address_stops_the_run_fast_naming_it
    an unknown host
 9  predict on 200 MB: 2.0 GB RSS    test_predict::test_a_killed_predict_resumes_after_its_last_whole_row_and_a_
    before the first batch; resume     changed_input_starts_over; benchmarks/predict_memory.py (peak RSS < 1 GB)
10  two predict runs on one --out    test_predict::test_a_second_run_on_one_output_is_stopped_by_the_lock
12  disk full / unwritable output    test_fileio::test_a_full_disk_leaves_the_previous_output_and_no_temp_file
                                     test_fileio::test_an_output_under_a_file_is_one_clear_error
                                     test_fileio::test_a_full_disk_mid_line_leaves_no_torn_line
                                     - test_an_unwritable_out_is_one_clear_error_with_exit_2
11  --rpm 6: 12 requests in 59.6 s   test_cost::test_rpm_allows_at_most_its_limit_in_any_60_second_window
                                     test_cost::test_a_unit_request_larger_than_the_limit_waits_for_an_empty_window
13  kill -9 of an atomic writer      test_fileio::test_temp_files_of_killed_writers_are_removed_by_the_next_writer
14  deeply nested JSON (input or     - test_deep_json_and_an_unclosed_csv_quote_are_errors_naming_file_and_line
    review export); unclosed quote
15  generate --out new/x.jsonl,      - test_generate_against_a_failing_endpoint_leaves_no_empty_outputs
    every call failing

Also (the issue's review notes): who annotated       test_review::test_the_bundled_gold_says_models_annotated_it
kappa with one annotation marked ground truth       test_review::test_kappa_keeps_disagreements_settled_by_marking_
                                                      one_annotation_ground_truth
agreement on bronze ACCEPT/REJECT; verdict required  test_review::test_bronze_verdict_agreement_is_reported,
                                                      test_review::test_bronze_review_rejects_leave_the_mix
silver review exports leave out gold notes          test_review::test_silver_export_leaves_gold_notes_out
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from clinsynth.programs import label as label_cli

from clinsynth.data.records import MAX_SENTENCE_CHARS, read_records
from clinsynth.jobs.resumable import failures_path_for, read_failures
from clinsynth.jobs.runner import RETRY_TEMPERATURE
from clinsynth.llm.lm import free_loopback_port
from tests.conftest import FakeOpenAI, chat_reply

SENTENCES = [f"Finding {i:02d} was noted on examination." for i in range(20)]
ROOT = Path(__file__).resolve().parents[1]
Reply = tuple  # (status, payload) or (status, payload, headers), as tests.conftest.FakeOpenAI takes
Fault = Callable[[str, dict, int], Reply | None]  # (sentence, body, its n-th request) -> a fault, or None: answer


def answer(*labels: str) -> dict:
    """A well-formed answer in DSPy's chat format."""
    return chat_reply(f"[[ ## categories ## ]]\n{json.dumps(list(labels))}\n\n[[ ## completed ## ]]")


def sentence_of(body: dict) -> str:
    prompt = "\n".join(str(m["content"]) for m in body["messages"])
    return prompt.split("[[ ## sentence ## ]]")[-1].strip().split("\n")[0]


class Script:
    """A labelling endpoint: answers NONE unless ``fault`` says otherwise; logs every request."""

    def __init__(self, fault: Fault | None = None) -> None:
        self.fault = fault or (lambda sentence, body, nth: None)
        self.log: list[tuple[str, float, float | None]] = []  # sentence, when, temperature asked
        self.release = threading.Event()  # ends hung requests when the test is over
        self._lock = threading.Lock()

    def __call__(self, body: dict) -> Reply:
        sentence = sentence_of(body)
        with self._lock:
            nth = sum(s == sentence for s, _, _ in self.log)
            self.log.append((sentence, time.monotonic(), body.get("temperature")))
        return self.fault(sentence, body, nth) or (200, answer())

    def hang(self) -> Reply:
        """Answer only once ``release`` is set (by the test, or when it ends)."""
        self.release.wait(30)
        return 200, answer()

    def requests(self, sentence: str) -> list[tuple[float, float | None]]:
        return [(when, temperature) for s, when, temperature in self.log if s == sentence]


@pytest.fixture
def serve(fake_openai) -> Iterator[Callable[[Script], FakeOpenAI]]:
    """Start a scripted endpoint on loopback; stopped (hung requests released) when the test ends."""
    running: list[tuple[Script, FakeOpenAI]] = []

    def start(script: Script) -> FakeOpenAI:
        server = fake_openai(script).__enter__()
        running.append((script, server))
        return server

    yield start
    for script, server in running:
        script.release.set()
        server.__exit__(None, None, None)


def write_input(tmp_path: Path, n: int = len(SENTENCES)) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES[:n]) + "\n")
    return src


def label_args(task_dir: Path, api_base: str, src: Path, out: Path, *flags: str) -> list[str]:
    return ["--task", str(task_dir), "--lm", "openai/fake", "--api-base", api_base, "--input", str(src),
            "--out", str(out), "--zero-shot", "--no-progress", *flags]  # fmt: skip


def label(*args: str) -> tuple[int, float]:
    """``programs.label`` in this process: exit status and seconds taken."""
    started = time.monotonic()
    code = label_cli.main(list(args))
    return code, time.monotonic() - started


def generate_args(task_dir: Path, api_base: str, out: Path) -> list[str]:
    """A small ``programs.generate`` run: one round, one attempt a call, no fail-fast stop."""
    return ["--task", str(task_dir), "--lm", "openai/fake", "--api-base", api_base, "--no-progress",
            "--out", str(out), "--per-category", "2", "--negatives", "1", "--multi-label", "0",
            "--max-rounds", "1", "--attempts", "1", "--max-consecutive-failures", "100"]  # fmt: skip


def unique_ids(out: Path) -> list[str]:
    """The ids in ``out``, checked to be unique (nothing duplicated)."""
    ids = [r.id for r in read_records(out)]
    assert len(ids) == len(set(ids)), f"duplicate ids in {out}"
    return ids


def line_id(sentence: str) -> str:
    return f"L{SENTENCES.index(sentence) + 1}"


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# ---------------------------------------------------------------- a dead or failing endpoint


def test_a_refused_port_stops_a_20_sentence_run_fast_and_leaves_no_empty_files(task_dir: Path, tmp_path, capsys):
    src = write_input(tmp_path)
    out = tmp_path / "out" / "silver.jsonl"
    api_base = f"http://127.0.0.1:{free_loopback_port()}/v1"  # nothing listens there

    code, seconds = label(*label_args(task_dir, api_base, src, out))  # default attempts and fail-fast

    err = capsys.readouterr().err
    assert code == 2 and seconds < 20  # 3 records x (1 + 2 s of backoff), not minutes
    (message,) = error_lines(err)
    assert "is not answering: 3 items in a row failed" in message and api_base.split("/v1")[0] in message
    assert "Connection refused" in message and "Rerun to resume" in message
    # Nothing empty is left: no output, no parquet, no lock; the failures file names what was tried.
    assert sorted(p.name for p in out.parent.iterdir()) == ["silver.jsonl.failures.jsonl"]
    failures = read_failures(failures_path_for(out))
    assert list(failures) == ["L1", "L2", "L3"] and {f["kind"] for f in failures.values()} == {"transport"}
    assert {f["attempts"] for f in failures.values()} == {3}


def test_a_hang_costs_at_most_timeout_times_attempts(task_dir: Path, tmp_path, serve, capsys):
    hung = SENTENCES[1]
    script = Script(lambda sentence, body, nth: script.hang() if sentence == hung else None)
    server = serve(script)
    out = tmp_path / "silver.jsonl"
    timeout, attempts = 0.5, 2

    code, seconds = label(*label_args(task_dir, server.api_base, write_input(tmp_path, 4), out,
                                      "--timeout", str(timeout), "--attempts", str(attempts)))  # fmt: skip

    assert code == 1
    assert len(script.requests(hung)) == attempts  # no retries inside the LM client multiplying the hang
    assert seconds < timeout * attempts + 3.0
    assert unique_ids(out) == ["L1", "L3", "L4"]
    (failure,) = read_failures(failures_path_for(out)).values()
    assert failure["id"] == "L2" and failure["kind"] == "transport" and "Timeout" in failure["error"]
    assert f"1 sentences failed (see {failures_path_for(out)})" in capsys.readouterr().err


def test_an_endpoint_that_hangs_on_every_request_stops_the_run_in_bounded_time(task_dir: Path, tmp_path, serve, capsys):
    script = Script(lambda sentence, body, nth: script.hang())
    server = serve(script)
    out = tmp_path / "silver.jsonl"
    timeout, attempts = 0.5, 2

    code, seconds = label(*label_args(task_dir, server.api_base, write_input(tmp_path), out,
                                      "--timeout", str(timeout), "--attempts", str(attempts)))  # fmt: skip

    assert code == 2
    assert len(script.log) == 3 * attempts  # three records in a row, then the run stops
    assert seconds < 3 * attempts * timeout + 3.0
    (message,) = error_lines(capsys.readouterr().err)
    assert "is not answering: 3 items in a row failed" in message
    assert not out.exists() and not out.with_suffix(".parquet").exists()


def test_a_401_stops_the_run_at_once_without_retries(task_dir: Path, tmp_path, serve, capsys):
    script = Script(lambda sentence, body, nth: (401, {"error": {"message": "Incorrect API key provided"}}))
    server = serve(script)
    out = tmp_path / "out" / "silver.jsonl"

    code, seconds = label(*label_args(task_dir, server.api_base, write_input(tmp_path), out))

    assert code == 2 and seconds < 10
    assert len(script.log) == 1  # a wrong key is not retried, and no other record is tried
    (message,) = error_lines(capsys.readouterr().err)
    assert "refused the credentials" in message and "check the API key" in message
    assert sorted(p.name for p in out.parent.iterdir()) == ["silver.jsonl.failures.jsonl"]


def test_http_500s_are_retried_and_provenance_records_the_sample_used(task_dir: Path, tmp_path, serve, capsys):
    down, flaky = SENTENCES[0], SENTENCES[1]
    broken = {down}

    def fault(sentence: str, body: dict, nth: int) -> Reply | None:
        if sentence in broken or (sentence == flaky and nth == 0):
            return 500, {"error": {"message": "overloaded", "type": "server_error"}}
        return None

    script = Script(fault)
    server = serve(script)
    src, out = write_input(tmp_path, 3), tmp_path / "silver.jsonl"

    code, _ = label(*label_args(task_dir, server.api_base, src, out, "--attempts", "2"))
    captured = capsys.readouterr()
    assert code == 1  # one record of three failed: not a success
    assert f"1 sentences failed (see {failures_path_for(out)}); rerun to retry them" in captured.err
    assert "labelled 2, already done 0, failed 1" in captured.out
    assert unique_ids(out) == ["L2", "L3"]
    # The flaky record was answered by its second try: a fresh sample at the retry temperature.
    (first, second) = script.requests(flaky)
    assert (first[1], second[1]) == (0.0, RETRY_TEMPERATURE)
    record = {r.id: r for r in read_records(out)}["L2"]
    assert {k: record.provenance.attributes[k] for k in ("attempts", "rollout", "temperature")} == {
        "attempts": 2, "rollout": 1, "temperature": RETRY_TEMPERATURE
    }  # fmt: skip

    broken.clear()  # the endpoint recovers: a rerun does only the failed record
    code, _ = label(*label_args(task_dir, server.api_base, src, out))
    assert code == 0 and "labelled 1, already done 2, failed 0" in capsys.readouterr().out
    assert sorted(unique_ids(out)) == ["L1", "L2", "L3"]
    assert not failures_path_for(out).exists()
    # Past the two rollouts the first run spent, as the endpoint saw it and provenance says.
    assert script.requests(down)[-1][1] == RETRY_TEMPERATURE
    attributes = {r.id: r for r in read_records(out)}["L1"].provenance.attributes
    assert (attributes["attempts"], attributes["rollout"], attributes["temperature"]) == (1, 2, RETRY_TEMPERATURE)

    broken.add(down)  # --max-failures: a run may leave that many failures and still succeed
    other = tmp_path / "other.jsonl"
    code, _ = label(*label_args(task_dir, server.api_base, src, other, "--attempts", "1", "--max-failures", "1"))
    assert code == 0 and "1 sentences failed" in capsys.readouterr().err
    assert list(read_failures(failures_path_for(other))) == ["L1"]


def test_a_429_waits_as_long_as_retry_after_asks(task_dir: Path, tmp_path, serve):
    wait = 2  # longer than the backoff without a hint (1 s), so the hint is what was honoured
    script = Script(
        lambda sentence, body, nth: (
            (429, {"error": {"message": "slow down"}}, {"Retry-After": str(wait)}) if nth == 0 else None
        )
    )
    server = serve(script)
    out = tmp_path / "silver.jsonl"

    code, _ = label(*label_args(task_dir, server.api_base, write_input(tmp_path, 1), out))

    assert code == 0 and unique_ids(out) == ["L1"]
    (first, _), (second, _) = script.requests(SENTENCES[0])
    assert second - first >= wait - 0.05


def test_malformed_and_out_of_taxonomy_answers_are_retried_then_recorded(task_dir: Path, tmp_path, serve, capsys):
    garbled, bad_body, ok_last = SENTENCES[0], SENTENCES[2], SENTENCES[6]
    out_of_taxonomy = {SENTENCES[1], SENTENCES[3], SENTENCES[4], SENTENCES[5]}

    def fault(sentence: str, body: dict, nth: int) -> Reply | None:
        first_try = not body.get("temperature")  # retries sample at a temperature above 0
        if sentence == garbled and first_try:
            return 200, chat_reply("I am not sure what this sentence means.")
        if sentence == bad_body and first_try:
            return 200, b"<html>502 Bad Gateway</html>"
        if sentence in out_of_taxonomy:
            return 200, answer("FLYING")
        return None

    server = serve(Script(fault))
    out = tmp_path / "silver.jsonl"

    code, _ = label(*label_args(task_dir, server.api_base, write_input(tmp_path, 7), out, "--attempts", "2"))

    assert code == 1
    # Bad answers never stop the run (three in a row here): only the endpoint failing does.
    assert unique_ids(out) == [line_id(s) for s in (garbled, bad_body, ok_last)]
    attempts = {r.id: r.provenance.attributes["attempts"] for r in read_records(out)}
    assert attempts == {line_id(garbled): 2, line_id(bad_body): 2, line_id(ok_last): 1}
    failures = read_failures(failures_path_for(out))
    assert sorted(failures) == sorted(line_id(s) for s in out_of_taxonomy)
    assert {f["kind"] for f in failures.values()} == {"answer"}
    assert f"4 sentences failed (see {failures_path_for(out)})" in capsys.readouterr().err


def test_an_over_long_line_reaches_the_endpoint_clipped_with_a_warning(task_dir: Path, tmp_path, serve, caplog):
    script = Script()
    server = serve(script)
    src = tmp_path / "long.txt"
    src.write_text("Fever.\n" + "Cough " * 20_000 + "\n")  # a 120 KB line
    out = tmp_path / "silver.jsonl"

    with caplog.at_level("WARNING", logger="clinsynth.data.records"):
        code, _ = label(*label_args(task_dir, server.api_base, src, out))

    assert code == 0
    assert max(len(sentence) for sentence, _, _ in script.log) <= MAX_SENTENCE_CHARS
    assert [len(r.text) for r in read_records(out)] == [len("Fever."), MAX_SENTENCE_CHARS]
    assert any(f"{src}:2:" in r.getMessage() and "MAX_SENTENCE_CHARS" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- kill -9 and concurrent writers


def subprocess_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DSPY_CACHEDIR": str(tmp_path / "dspy-cache")}  # no answers from another run's cache


def _wait_for_lines(out: Path, n: int, proc: subprocess.Popen, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{out} did not reach {n} lines (run exited {proc.poll()})")


def _wait_for_request(script: Script, sentence: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not script.requests(sentence):
        assert time.monotonic() < deadline, f"no request for {sentence!r}"
        time.sleep(0.05)


def test_kill_9_keeps_the_failures_file_and_a_rerun_resumes(task_dir: Path, tmp_path, serve, capsys):
    n, held = 12, SENTENCES[7]  # the killed run is held at L8, after writing L4 to L7
    src, out = write_input(tmp_path, n), tmp_path / "silver.jsonl"
    broken = {SENTENCES[0]}

    def fault(sentence: str, body: dict, nth: int) -> Reply | None:
        if sentence in broken:
            return 200, answer("FLYING")
        return script.hang() if sentence == held else None

    script = Script(fault)
    server = serve(script)
    args = label_args(task_dir, server.api_base, src, out, "--attempts", "1")

    assert label(*args, "--limit", "3")[0] == 1  # L1 fails, L2 and L3 are labelled
    assert list(read_failures(failures_path_for(out))) == ["L1"]

    proc = subprocess.Popen([sys.executable, "-m", "programs.label", *args], cwd=ROOT, env=subprocess_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        _wait_for_lines(out, 6, proc)
        _wait_for_request(script, held)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    written = len(unique_ids(out))
    assert written == 6
    failures = read_failures(failures_path_for(out))
    assert list(failures) == ["L1"] and failures["L1"]["attempts"] == 2  # kept, and its retry by the killed run

    broken.clear()
    script.release.set()
    capsys.readouterr()
    assert label(*args)[0] == 0
    assert f"already done {written}" in capsys.readouterr().out
    assert sorted(unique_ids(out)) == sorted(f"L{i}" for i in range(1, n + 1))
    assert sorted(r.text for r in read_records(out)) == sorted(SENTENCES[:n])
    assert not failures_path_for(out).exists() and not out.with_name(out.name + ".lock").exists()


def test_a_second_label_run_on_the_same_out_is_stopped_by_the_lock(task_dir: Path, tmp_path, serve, capsys):
    n, held = 10, SENTENCES[3]  # the first run is held at L4 while the second one tries
    src, out = write_input(tmp_path, n), tmp_path / "silver.jsonl"
    script = Script(lambda sentence, body, nth: script.hang() if sentence == held else None)
    server = serve(script)
    args = label_args(task_dir, server.api_base, src, out)

    first = subprocess.Popen([sys.executable, "-m", "programs.label", *args], cwd=ROOT, env=subprocess_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for_request(script, held)
        sent = len(script.log)
        code, seconds = label(*args)
        assert code == 2 and seconds < 10
        (message,) = error_lines(capsys.readouterr().err)
        assert f"{out} is being written by another run (lock {out}.lock held)" in message
        assert len(script.log) == sent  # the second run sent nothing
        script.release.set()
        stdout, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    assert f"labelled {n}, already done 0, failed 0" in stdout
    assert len(unique_ids(out)) == n
    from datasets import Dataset

    assert sorted(Dataset.from_parquet(str(out.with_suffix(".parquet")))["id"]) == sorted(unique_ids(out))
    assert not out.with_name(out.name + ".lock").exists()


# ---------------------------------------------------------------- bad inputs, generate


@pytest.mark.parametrize("command", ["label", "predict"])
@pytest.mark.parametrize("kind", ["invalid utf-8", "directory"])
def test_bad_inputs_exit_2_naming_the_file_and_line(task_dir: Path, tmp_path, monkeypatch, capsys, command, kind):
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may start on a bad input"))
    if kind == "directory":
        src, where = tmp_path / "notes.txt", "is a directory, expected a file"
        src.mkdir()
        expected = f"{src}: {where}"
    else:
        src = tmp_path / "latin1.txt"
        src.write_bytes(b"Cough.\nFi\xe8vre.\n")
        expected = f"{src}:2: not valid UTF-8"
    out = tmp_path / "out.jsonl"
    if command == "label":
        code = label_cli.main(label_args(task_dir, "http://127.0.0.1:9/v1", src, out))
    else:
        from clinsynth.app.cli import main

        code = main(["predict", "--task", str(task_dir), "--input", str(src), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and "Traceback" not in err
    assert not out.exists()


def test_generate_exits_1_on_failed_calls_unless_max_failures_allows_them(
    tmp_path: Path, mini_taxonomy_path: Path, fake_openai, monkeypatch, capsys
):
    from clinsynth.programs import generate as gen_cli

    from tests.bow import bow_embed
    from tests.test_generate import ScriptedLM, make_task

    monkeypatch.setattr("clinsynth.model.embeddings.encode", bow_embed)  # no MiniLM in unit tests
    task = make_task(tmp_path, mini_taxonomy_path)
    out = tmp_path / "new_dir" / "x.jsonl"  # its folder does not exist yet
    with fake_openai(ScriptedLM(fail_generation_after=2)) as server:
        argv = generate_args(task.root, server.api_base, out)
        code = gen_cli.main(argv)
        captured = capsys.readouterr()
        assert code == 1
        report = json.loads(out.with_name("x.jsonl.report.json").read_text())
        failed = report["failed_calls"]
        assert failed > 0 and f"failed calls {failed}" in captured.out
        assert f"failures in {failures_path_for(out)}" in captured.err
        assert len(read_failures(failures_path_for(out))) == failed
        kept = unique_ids(out)
        assert kept  # the calls that did answer were kept

        code = gen_cli.main([*argv, "--max-failures", str(failed)])
        assert code == 0 and unique_ids(out) == kept


def test_generate_against_a_failing_endpoint_leaves_no_empty_outputs(
    tmp_path: Path, mini_taxonomy_path: Path, fake_openai, monkeypatch, capsys
):
    """Issue 26 row 15: every generation call fails (500s, run not stopped by fail-fast)."""
    from clinsynth.programs import generate as gen_cli

    from tests.bow import bow_embed
    from tests.test_generate import ScriptedLM, make_task

    monkeypatch.setattr("clinsynth.model.embeddings.encode", bow_embed)  # no MiniLM in unit tests
    task = make_task(tmp_path, mini_taxonomy_path)
    out = tmp_path / "new" / "x.jsonl"  # its folder does not exist yet
    out.parent.mkdir()
    empty_dropped = out.with_name("x.jsonl.dropped.jsonl")
    empty_dropped.touch()  # an empty file an earlier run of this kind left behind goes too
    with fake_openai(ScriptedLM(fail_generation_after=0)) as server:
        argv = generate_args(task.root, server.api_base, out)
        code = gen_cli.main(argv)

    captured = capsys.readouterr()
    assert code == 1 and "nothing written: 0 kept" in captured.out
    # No empty outputs: the report says what failed, the failures file what to retry.
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.jsonl.failures.jsonl", "x.jsonl.report.json"]
    report = json.loads(out.with_name("x.jsonl.report.json").read_text())
    assert report["failed_calls"] == len(read_failures(failures_path_for(out))) > 0

def test_the_main_job_stops_before_the_experiment_when_silver_leaves_failures(task_dir: Path, tmp_path, serve, capsys):
    from clinsynth.app.cli import main

    script = Script(lambda sentence, body, nth: (200, answer("FLYING")))  # every answer out of taxonomy
    server = serve(script)
    out_dir = tmp_path / "run"
    argv = ["run", "--quick", "--task", str(task_dir), "--lm", "openai/fake", "--api-base", server.api_base,
            "--attempts", "1", "--timeout", "30", "--no-progress", "--out-dir", str(out_dir),
            "--max-failures", "0"]  # fmt: skip (a quick run goes on past failures unless told)

    code = main(argv)

    err = capsys.readouterr().err
    failures = read_failures(failures_path_for(out_dir / "silver.jsonl"))
    assert code == 1 and len(failures) == len({s for s, _, _ in script.log}) > 0
    assert not any(temperature for _, _, temperature in script.log)  # --attempts 1: no retry sample
    (message,) = error_lines(err)
    assert f"silver: {len(failures)} sentences still failed after 1 attempts (more than --max-failures 0)" in message
    assert "Rerun to retry them" in message and f"--max-failures {len(failures)}" in message
    assert "| programs" in err and re.search(r"\| silver +\| stopped: too many failures", err)  # table, then error
    # Nothing after silver ran: no bronze, no experiment, no model.
    assert sorted(p.name for p in out_dir.iterdir()) == ["silver.jsonl.failures.jsonl", "silver.jsonl.runs.jsonl"]


def test_max_cost_bounds_the_whole_main_job_not_each_step(task_dir: Path, tmp_path):
    from clinsynth.app.pipeline import MainJob, RunConfig
    from clinsynth.data.task import load_task
    from clinsynth.jobs.resumable import MapSettings
    from clinsynth.llm.meter import Limits

    limits = Limits(max_cost=1.0, rpm=30)
    job = MainJob(load_task(task_dir), RunConfig(out_dir=tmp_path, map=MapSettings(attempts=2, limits=limits)))
    assert job.step_map.limits == limits
    assert job._spend({"calls": 3, "cost_usd": 0.25}) == "; 3 LM calls, $0.2500"  # shown in the step's result
    assert job._spend({"calls": 0, "cost_usd": 0.0}) == ""  # all answers from the cache: nothing sent
    job._spend({"calls": 1, "cost_usd": 0.5})
    assert job.step_map.limits == Limits(max_cost=0.25, rpm=30) and job.step_map.attempts == 2
    assert (job.calls, job.unpriced) == (4, False)
    job._spend({"calls": 2, "cost_usd": 0.5})
    assert job.step_map.limits.max_cost == 0.0  # the next request is refused, not given a negative budget
    assert job.usage_words() == "LM calls 6, $1.2500"  # the job's closing line
    job._spend({"calls": 1, "cost_usd": None})
    assert job.usage_words() == "LM calls 7, unknown price"  # one unpriced step makes the total unknown


# ---------------------------------------------------------------- issue 26


def test_another_input_on_the_same_out_is_refused_not_skipped(task_dir: Path, tmp_path, serve, capsys):
    """Row 6: b.txt on a.txt's --out shares its line ids; it used to be "all already labelled", exit 0."""
    script = Script()
    server = serve(script)
    out = tmp_path / "o.jsonl"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(SENTENCES[:2]) + "\n")
    b.write_text("\n".join(SENTENCES[2:4]) + "\n")
    assert label(*label_args(task_dir, server.api_base, a, out))[0] == 0
    before = out.read_bytes()
    capsys.readouterr()

    code, _ = label(*label_args(task_dir, server.api_base, b, out))

    (message,) = error_lines(capsys.readouterr().err)
    assert code == 2 and f"{out}:1: field 'text'" in message and "'L1'" in message and "b.txt" in message
    assert "another --out" in message
    assert out.read_bytes() == before and {s for s, _, _ in script.log} == set(SENTENCES[:2])
    # The same input again resumes as before (nothing to do), and b labels into its own --out.
    assert label(*label_args(task_dir, server.api_base, a, out))[0] == 0
    assert label(*label_args(task_dir, server.api_base, b, tmp_path / "b.jsonl"))[0] == 0
    assert [r.text for r in read_records(tmp_path / "b.jsonl")] == SENTENCES[2:4]


def test_an_unwritable_out_is_one_clear_error_with_exit_2(task_dir: Path, tmp_path, serve, capsys):
    """Row 12: an --out that cannot be written (here under a file: chmod does not stop root) is exit 2, one line."""
    script = Script()
    server = serve(script)
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "o.jsonl"

    code, _ = label(*label_args(task_dir, server.api_base, write_input(tmp_path, 2), out))

    err = capsys.readouterr().err
    (message,) = error_lines(err)
    assert code == 2 and f"cannot write {out}" in message and "Traceback" not in err
    assert script.log == []  # refused before any request was paid for


class CraftedPickle:
    """A hostile ``model_head.pkl``: unpickling it writes ``marker`` (any code could run there)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return Path.write_text, (self.marker, "code ran")


def test_a_pickle_in_a_model_folder_runs_no_code_unless_trusted(mini_trained, task_dir: Path, tmp_path, capsys):
    import joblib

    from clinsynth.app.cli import main
    from clinsynth.errors import ClinsynthError
    from clinsynth.model.classifier import SignsClassifier

    _, train, classifier = mini_trained
    texts = [r.text for r in train[:6]]
    model_dir = classifier.save(tmp_path / "model")
    # Saved without pickle: the head is safetensors + JSON, and loads back to the same predictions.
    assert [p.name for p in model_dir.rglob("*.pkl")] == [] and (model_dir / "model_head.safetensors").is_file()
    assert SignsClassifier.load(model_dir).predict(texts) == classifier.predict(texts)

    marker = tmp_path / "marker"
    joblib.dump(CraftedPickle(marker), model_dir / "model_head.pkl")
    with pytest.raises(ClinsynthError, match=r"model_head\.pkl: a pickle file .*--trust-pickle"):
        SignsClassifier.load(model_dir)
    src, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    src.write_text("Coughing all night.\n")
    argv = ["predict", "--task", str(task_dir), "--model", str(model_dir), "--input", str(src), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "model_head.pkl" in err and "--trust-pickle" in err and "Traceback" not in err
    assert not marker.exists() and not out.exists()

    # Trusted, the pickle is loaded as SetFit always did (and so its code runs).
    SignsClassifier.load(model_dir, trust_pickle=True)
    assert marker.read_text() == "code ran"


def test_an_answer_cached_from_one_endpoint_is_not_served_for_another(task_dir: Path, tmp_path, serve, capsys):
    """Row 7: DSPy's cache key leaves out api_base, so B used to get 0 calls and A's answers as its own."""
    a_script, b_script = Script(lambda s, body, nth: (200, answer("DIAGNOSIS"))), Script()
    a, b = serve(a_script), serve(b_script)
    src = write_input(tmp_path, 2)

    assert label(*label_args(task_dir, a.api_base, src, tmp_path / "a.jsonl"))[0] == 0
    b_base = b.api_base.replace("127.0.0.1", "localhost").removesuffix("/v1")
    assert label(*label_args(task_dir, b_base, src, tmp_path / "b.jsonl"))[0] == 0

    assert len(b_script.log) == 2  # B answered for itself
    from_b = read_records(tmp_path / "b.jsonl")
    assert [r.labels for r in from_b] == [[], []]
    b_port = b.api_base.split(":")[-1].split("/")[0]
    assert {r.provenance.attributes["endpoint"] for r in from_b} == {f"openai/fake at http://localhost:{b_port}"}
    # A spelled another way is the same server: its cached answers serve, nothing is sent again.
    a_base = a.api_base.replace("127.0.0.1", "localhost")
    assert label(*label_args(task_dir, a_base, src, tmp_path / "a2.jsonl"))[0] == 0
    assert len(a_script.log) == 2
    assert [r.labels for r in read_records(tmp_path / "a2.jsonl")] == [["DIAGNOSIS"], ["DIAGNOSIS"]]


def test_deep_json_and_an_unclosed_csv_quote_are_errors_naming_file_and_line(task_dir: Path, tmp_path, capsys):
    """Row 14: a RecursionError traceback on deep JSON; an unclosed quote silently swallowed the next rows."""
    from clinsynth.app.review import read_export
    from clinsynth.data.records import read_inputs
    from clinsynth.errors import DataError
    from tests.conftest import ad_taxonomy

    deep = "[" * 100_000 + "]" * 100_000
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "Cough."}\n{"text": "x", "meta": ' + deep + "}\n")
    export = tmp_path / "export.json"
    export.write_text('[\n{"id": 1,\n "data": ' + deep + "}\n]\n")
    for path, line in ((jsonl, 2), (export, 3)):
        with pytest.raises(DataError) as err:
            read_inputs(path) if path == jsonl else read_export(path, ad_taxonomy())
        assert f"{path}:{line}:" in str(err.value) and "nested" in str(err.value)

    csv_in = tmp_path / "in.csv"
    csv_in.write_text('id,text\n1,Cough.\n2,"Fever since Monday.\n3,Chills.\n4,Night sweats.\n')
    with pytest.raises(DataError) as err:
        read_inputs(csv_in)
    assert f"{csv_in}:3:" in str(err.value) and "invalid CSV" in str(err.value)
    out = tmp_path / "o.jsonl"
    assert label(*label_args(task_dir, "http://127.0.0.1:9/v1", csv_in, out))[0] == 2
    assert f"{csv_in}:3:" in capsys.readouterr().err and not out.exists()

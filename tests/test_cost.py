"""Cost plan and guards for paid LMs: --dry-run sends nothing, --max-cost stops before the budget, --rpm/--tpm.

A loopback fake OpenAI server stands in for the paid endpoint; the model string is
``openai/gpt-4o-mini`` so litellm's offline cost map prices it. "Nothing sent" means the
server saw zero requests.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from clinsynth.programs import compile as compile_cli
from clinsynth.programs import generate as generate_cli
from clinsynth.programs import label as label_cli

from clinsynth.data.records import read_records, side_path
from clinsynth.jobs.resumable import failures_path_for
from clinsynth.llm import cost, pricing
from clinsynth.llm.meter import Limits, Meter, RateLimiter
from tests.conftest import chat_reply, write_task

MODEL = "openai/gpt-4o-mini"
SENTENCES = [f"Finding {i:02d} was noted on examination." for i in range(8)]
PROMPT_TOKENS, COMPLETION_TOKENS = 2000, 20  # what the fake endpoint bills each call


def labelled(body: dict) -> tuple:
    reply = chat_reply('[[ ## categories ## ]]\n["COGNITIVE_IMPAIRMENT"]\n\n[[ ## completed ## ]]')
    reply["usage"] = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    return 200, reply


@pytest.fixture
def server(fake_openai):
    with fake_openai(labelled) as s:
        yield s


@pytest.fixture
def no_lm(monkeypatch):
    """A dry run must build no LM and start no embedded server."""

    def refuse(*args, **kwargs):
        raise AssertionError("a dry run built an LM or started a server")

    monkeypatch.setattr("clinsynth.llm.session.make_lm", refuse)
    monkeypatch.setattr("clinsynth.llm.lm.local_server", refuse)


def label_args(task_dir: Path, api_base: str, src: Path, *flags: str) -> list[str]:
    return ["--task", str(task_dir), "--lm", MODEL, "--api-base", api_base, "--input", str(src),
            "--zero-shot", "--no-progress", *flags]  # fmt: skip


def write_input(tmp_path: Path) -> Path:
    src = tmp_path / "in.txt"
    src.write_text("\n".join(SENTENCES) + "\n")
    return src


def test_a_label_dry_run_prints_tokens_and_dollars_and_sends_nothing(
    task_dir: Path, tmp_path: Path, server, no_lm, capsys
):
    code = label_cli.main(label_args(task_dir, server.api_base, write_input(tmp_path), "--dry-run", "--samples", "2"))

    out = capsys.readouterr().out
    assert code == 0 and server.requests == []
    assert f"dry run: label on {MODEL}" in out and "nothing sent" in out
    assert "label 8 sentences x 2 samples" in out and "| 16 " in out  # calls = sentences x samples
    assert "litellm cost map: $0.15 / $0.6 per 1M" in out
    total = next(line for line in out.splitlines() if line.startswith("| total"))
    calls, prompt, completion, dollars = [c.strip() for c in total.strip("|").split("|")][1:]
    assert int(calls) == 16 and int(prompt) > 16 * 1000  # the guideline is in every prompt
    assert float(dollars.lstrip("$")) == pytest.approx(int(prompt) * 0.15e-6 + int(completion) * 0.6e-6, abs=1e-4)


def test_a_dry_run_counts_the_real_prompt():
    """The plan's tokens are the adapter's real messages counted with the model's tokenizer."""
    from clinsynth.programs.steps.label import load_labeller

    from tests.conftest import ad_taxonomy

    program = load_labeller(ad_taxonomy(), None)
    messages = cost.prompt_messages(program.label, None, {"sentence": "Forgets names."})
    assert messages[0]["role"] == "system" and "Forgets names." in messages[-1]["content"]
    assert pricing.count_tokens(MODEL, messages) > 1000
    assert pricing.price_per_token("local") == (0.0, 0.0) and pricing.price_per_token("openai/not-a-model-xyz") is None


def test_a_dry_run_says_the_real_run_would_be_refused(tmp_path: Path, server, no_lm, capsys):
    # The fake server declared remote (a tunnel): private input may not go there.
    task_dir = write_task(tmp_path / "task", remote=(f"{server.api_base.rsplit('/v1', 1)[0]}/*",))

    code = label_cli.main(label_args(task_dir, server.api_base, write_input(tmp_path), "--dry-run"))

    captured = capsys.readouterr()
    assert code == 2 and server.requests == []
    assert "| total" in captured.out  # the plan is still printed
    assert "the real run would be refused" in captured.err and "refusing to send private data" in captured.err


def test_max_cost_stops_before_the_budget_is_passed_and_a_rerun_resumes(task_dir: Path, tmp_path: Path, server, capsys):
    src, out = write_input(tmp_path), tmp_path / "silver.jsonl"
    prompt_price, completion_price = pricing.price_per_token(MODEL)
    per_call = PROMPT_TOKENS * prompt_price + COMPLETION_TOKENS * completion_price
    budget = 2.5 * per_call

    code = label_cli.main(label_args(task_dir, server.api_base, src, "--out", str(out), "--max-cost", str(budget)))

    err = capsys.readouterr().err
    sent = len(server.requests)
    assert code == 2 and 1 <= sent < len(SENTENCES)
    assert sent * per_call <= budget  # never past the budget
    assert "stopped before passing --max-cost" in err and "rerun with a larger --max-cost" in err
    # Everything answered is written; nothing counts as failed; the spend is logged.
    assert len(read_records(out)) == sent and not failures_path_for(out).exists()
    (run,) = [json.loads(line) for line in side_path(out, "runs.jsonl").read_text().splitlines()]
    assert run["usage"]["calls"] == sent and run["usage"]["stopped_by_budget"]
    assert run["usage"]["cost_usd"] == pytest.approx(sent * per_call) and run["usage"]["cost_usd"] <= budget

    code = label_cli.main(label_args(task_dir, server.api_base, src, "--out", str(out)))  # no budget: resumes
    captured = capsys.readouterr().out
    assert code == 0 and len(server.requests) == len(SENTENCES)
    assert f"labelled {len(SENTENCES) - sent}, already done {sent}" in captured
    assert f"usage: {len(SENTENCES) - sent} calls, {(len(SENTENCES) - sent) * PROMPT_TOKENS} prompt" in captured


def test_a_budget_stop_with_threads_writes_every_answer_already_in_flight(
    task_dir: Path, tmp_path: Path, fake_openai, capsys
):
    def slow(body: dict) -> tuple:
        time.sleep(0.5)  # so other threads reach the budget while this answer is on its way
        return labelled(body)

    src, out = write_input(tmp_path), tmp_path / "silver.jsonl"
    prompt_price, completion_price = pricing.price_per_token(MODEL)
    budget = 2.5 * (PROMPT_TOKENS * prompt_price + COMPLETION_TOKENS * completion_price)
    with fake_openai(slow) as server:
        flags = ("--out", str(out), "--max-cost", str(budget), "--threads", "4")
        code = label_cli.main(label_args(task_dir, server.api_base, src, *flags))
        sent = len(server.requests)

    assert code == 2 and 1 <= sent < len(SENTENCES)
    assert "stopped before passing --max-cost" in capsys.readouterr().err
    assert len(read_records(out)) == sent  # every answer paid for is written
    assert not failures_path_for(out).exists()


def test_max_cost_needs_a_price(task_dir: Path, tmp_path: Path, server, capsys):
    args = label_args(task_dir, server.api_base, write_input(tmp_path), "--out", str(tmp_path / "o.jsonl"))
    args[args.index(MODEL)] = "openai/unpriced-model"
    assert label_cli.main([*args, "--max-cost", "1"]) == 2
    assert "needs a price" in capsys.readouterr().err and server.requests == []


def test_rpm_allows_at_most_its_limit_in_any_60_second_window():
    """Issue 26 row 11: a full-then-refilling bucket let 12 requests through within 59.6 s at --rpm 6."""
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(6, clock=lambda: now[0], sleep=sleep)
    times = []
    for i in range(14):
        limiter.acquire()
        times.append(now[0])
        now[0] += 0.5 if i % 3 else 4.0  # requests arrive unevenly, as from worker threads
    assert times[:6] == [0.0, 4.0, 4.5, 5.0, 9.0, 9.5]  # the first six go as they come
    assert all(times[i + 6] - times[i] >= 60.0 for i in range(len(times) - 6))  # never 7 in 60 s
    assert times[6] == 60.0  # and none waits longer than the window asks


def test_a_unit_request_larger_than_the_limit_waits_for_an_empty_window():
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    tokens = RateLimiter(1000, clock=lambda: now[0], sleep=sleep)
    assert tokens.acquire(400) == 0 and tokens.acquire(600) == 0
    now[0] += 30
    assert tokens.acquire(5000) == pytest.approx(30.0)  # clipped to the limit: waits for both to leave


def test_rpm_and_tpm_go_through_the_meter(monkeypatch):
    meter = Meter(MODEL, Limits(rpm=120, tpm=10_000))
    asked: list[tuple[str, float]] = []
    monkeypatch.setattr(meter.requests, "acquire", lambda n=1: asked.append(("requests", n)) or 0.0)
    monkeypatch.setattr(meter.tokens, "acquire", lambda n=1: asked.append(("tokens", n)) or 0.0)
    messages = [{"role": "user", "content": "hello"}]
    meter.release(meter.before(messages, max_tokens=100))
    assert asked == [("requests", 1), ("tokens", pricing.count_tokens(MODEL, messages) + 100)]


def test_a_generate_dry_run_plans_the_calls_the_run_would_make(task_dir: Path, tmp_path: Path, server, no_lm, capsys):
    args = ["--task", str(task_dir), "--lm", MODEL, "--api-base", server.api_base, "--out", str(tmp_path / "b.jsonl"),
            "--per-category", "2", "--categories", "TREATMENT", "--dry-run"]  # fmt: skip
    assert generate_cli.main(args) == 0 and server.requests == []
    out = capsys.readouterr().out
    # TREATMENT 2, NONE 2, two-category 1, each x overgenerate 2 / 5 a call.
    calls = sum(math.ceil(q * 2.0 / 5) for q in (2, 2, 1))
    assert f"| generation calls, round 1 | {calls} " in out.replace("  ", " ").replace("  ", " ")
    assert "round trip (at most)" in out and "$" in out


def test_a_compile_dry_run_sends_nothing(task_dir: Path, server, no_lm, capsys):
    args = ["--task", str(task_dir), "--lm", MODEL, "--api-base", server.api_base, "--dev-limit", "5",
            "--optimizer", "bootstrap", "--dry-run"]  # fmt: skip
    assert compile_cli.main(args) == 0 and server.requests == []
    out = capsys.readouterr().out
    assert "dev, before (zero-shot)" in out and "optimizer (bootstrap)" in out and "bootstrap: at most" in out


def test_a_compile_over_budget_stops_and_saves_nothing(task_dir: Path, server, capsys):
    args = [
        "--task",
        str(task_dir),
        "--lm",
        MODEL,
        "--api-base",
        server.api_base,
        "--dev-limit",
        "3",
        "--max-cost",
        "0.0001",
    ]  # fmt: skip  (less than one call may cost)
    assert compile_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "stopped before passing --max-cost" in err and "nothing saved" in err
    assert server.requests == [] and not any((task_dir / "compiled").glob("*.json"))


def test_a_main_job_dry_run_plans_each_lm_step_and_their_total_and_sends_nothing(
    tmp_path: Path, server, no_lm, capsys, monkeypatch
):
    from clinsynth.app.cli import main

    def no_embedding(*args, **kwargs):
        raise AssertionError("a dry run embedded the corpus")

    monkeypatch.setattr("clinsynth.model.embeddings.encode_cached", no_embedding)
    small = "[label]\nlimit = 4\npool = 300\n\n[generate]\nper_category = 1\n"
    task_dir = write_task(tmp_path / "task", extra=small)  # no compiled labeller: the job would compile one
    out_dir = tmp_path / "run"
    argv = ["run", "--task", str(task_dir), "--regenerate", "--lm", MODEL, "--api-base", server.api_base,
            "--out-dir", str(out_dir), "--dry-run", "--max-cost", "100"]  # fmt: skip

    code = main(argv)

    out = capsys.readouterr().out
    assert code == 0 and server.requests == [] and not out_dir.exists()
    for step in ("compile", "label", "generate"):
        assert f"dry run: {step} on {MODEL}" in out, step
    table = {row[0]: row for row in _table_rows(out, "| step")}
    assert list(table) == ["compile", "label", "generate", "total"]
    for column in (2, 3, 4):  # calls, prompt and completion tokens add up
        assert int(table["total"][column]) == sum(int(table[s][column]) for s in ("compile", "label", "generate"))
    assert "--max-cost $100.0000 for the whole run: the estimate is within budget" in out
    assert "random sample of 4 corpus sentences stands in for the relevance prefilter's pick" in out
    assert "training: estimated once the data it trains on exist" in out  # silver and bronze come first

    assert main(["run", "--dry-run"]) == 0  # the bundled task: committed programs, silver and bronze
    out = capsys.readouterr().out
    assert "this run sends nothing to an LM" in out
    assert "experiment runs to train" in out and "then the default model on" in out
    assert "time: at most about" in out


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The body rows of the markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_a_plan_times_the_embedded_model_reading_the_shared_prompt_prefix_once():
    line = cost.PlanLine("label", calls=10, prompt_tokens=10 * 1000, completion_tokens=10 * 30,
                         shared_prompt_tokens=900)  # fmt: skip
    # The first call reads its 1,000 prompt tokens; each later one only its 100 after the shared prefix.
    expected = (1000 + 9 * 100) / pricing.LOCAL_PROMPT_TOKENS_PER_S + 300 / pricing.LOCAL_COMPLETION_TOKENS_PER_S
    assert line.local_seconds() == pytest.approx(expected)
    local = cost.CostPlan("label", "local", "embedded", lines=[line])
    assert local.seconds == pytest.approx(expected)
    assert f"time: about {expected:.0f} s with the embedded model" in local.render()
    remote = cost.CostPlan("label", MODEL, "https://api.example/v1", lines=[line])
    assert remote.seconds is None and "time: not estimated: a remote endpoint" in remote.render()
    system = {"role": "system", "content": "The same instructions for every call."}
    prompts = [[system, {"role": "user", "content": f"Sentence: {text}"}] for text in ("Forgets names.", "Lost keys.")]
    shared = cost.shared_prefix_tokens(MODEL, prompts)
    assert 0 < shared < pricing.count_tokens(MODEL, prompts[0]) and cost.shared_prefix_tokens(MODEL, prompts[:1]) == 0

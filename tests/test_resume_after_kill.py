"""A labelling run killed mid-way resumes on rerun: nothing lost, nothing duplicated."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from clinsynth.data.records import read_records
from tests.conftest import chat_reply

N = 12


def test_killed_run_resumes_without_duplicates_or_losses(tmp_path: Path, fake_openai):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(f"Sentence number {i} of the note." for i in range(N)) + "\n")
    out = tmp_path / "silver.jsonl"

    def reply(body: dict) -> tuple[int, dict]:
        time.sleep(0.15)  # slow enough to kill the run half-way
        return 200, chat_reply('{"categories": ["NONE"]}')

    env = {
        **os.environ,
        "DSPY_CACHEDIR": str(tmp_path / "dspy-cache"),  # no answers from an earlier run's cache
    }
    with fake_openai(reply) as server:
        cmd = [
            sys.executable,
            "-m",
            "clinsynth.programs.label",
            "--lm",
            "openai/fake",
            "--api-base",
            server.api_base,
            "--input",
            str(src),
            "--out",
            str(out),
            "--zero-shot",
            "--no-progress",
        ]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 4):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        written = len(out.read_text().splitlines())
        assert 4 <= written < N, "the run must be killed half-way for this test to mean anything"
        with out.open("a") as fh:  # a torn last line, as a kill during a write leaves
            fh.write('{"id": "t-torn", "text": "half a rec')

        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = read_records(out)
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids)) == N
    assert sorted(r.text for r in records) == sorted(src.read_text().splitlines())
    assert f"already done {written}" in done.stdout
    from datasets import Dataset

    table = Dataset.from_parquet(str(out.with_suffix(".parquet")))
    assert sorted(table["id"]) == sorted(ids) and json.loads(table["provenance"][0])["lm"] == "openai/fake"

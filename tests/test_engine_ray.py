"""``--engine ray`` on a real Ray cluster of one node (2 CPUs): same output as the local engine, resume by
shard, per-record failures recorded as the local engine records them, and the privacy gate before any worker
starts.

The cluster starts once for the module as the README's cluster recipe starts one, ``ray start --head``, and
every run reaches it through ``--ray-address``. Each run that opens a Ray session does so in a process of its
own, as a user's command does: one ``ray.init`` and one ``ray.shutdown`` a process. While every driver ran
inside pytest's process, a CI session once died in this module with no output; in a child a driver can
only fail its own test, and its output is in the failure.
Skipped when the 'scale' extra (ray[data]) is not installed.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

import pytest

from clinsynth.data.records import read_records
from clinsynth.jobs.resumable import failures_path_for, read_failures
from tests.conftest import FakeOpenAI, write_task
from tests.test_faults import (
    SENTENCES,
    Script,
    answer,
    label,
    label_args,
    line_id,
    subprocess_env,
    unique_ids,
    write_input,
)

ray = pytest.importorskip("ray")

N_SENTENCES = 500
PREDICT_SHARD = 256  # two shards of whole scoring batches
RAY_CLI = str(Path(sys.executable).with_name("ray"))  # the venv's, beside this Python


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``ray start --head --block`` in its own process for the module; its address; stopped at the end."""
    from clinsynth.llm.lm import free_loopback_port

    port = free_loopback_port()
    # Workers inherit the head's environment: no usage reporting, a DSPy cache of their own. Token auth is
    # off explicitly: Ray turns it on by itself when a token happens to lie in ~/.ray, and a driver given an
    # explicit address would then need RAY_AUTH_MODE=token before importing ray (the README's recipe says so).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
           "DSPY_CACHEDIR": str(tmp_path_factory.mktemp("ray-dspy-cache"))}  # fmt: skip
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    with log.open("w") as sink:
        head = subprocess.Popen(
            [RAY_CLI, "start", "--head", "--block", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"],
            env=env, stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_head(head, address, log)
        yield address
    finally:
        head.terminate()  # --block takes SIGTERM as a clean stop and ends every process it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        _forget_head(port)


def _forget_head(port: int) -> None:
    """Remove the current-cluster file the head wrote, if it still names this head: ``ray stop`` would, but
    it also stops every other Ray process on the machine."""
    from ray._common.utils import get_ray_address_file

    current = Path(get_ray_address_file(None))
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()


def _wait_for_head(head: subprocess.Popen, address: str, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited ({head.returncode}):\n{log.read_text()[-2000:]}")
        probe = subprocess.run([RAY_CLI, "status", f"--address={address}"], capture_output=True, text=True)
        if probe.returncode == 0:
            return
        time.sleep(1)
    pytest.fail(f"the Ray head at {address} did not come up in {timeout:.0f} s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def model_dir(mini_trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_trained[2].save(tmp_path_factory.mktemp("model") / "model")


@pytest.fixture(scope="module")
def corpus_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus's first 500 sentences, as JSONL with their ids."""
    from clinsynth.data.corpus import iter_sentences
    from clinsynth.paths import PROJECT_ROOT

    corpus = PROJECT_ROOT / "data" / "corpus" / "mtsamples.csv.gz"
    path = tmp_path_factory.mktemp("corpus") / "sentences.jsonl"
    lines = [json.dumps({"id": s.id, "text": s.text}) for s in islice(iter_sentences(corpus), N_SENTENCES)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _predict_args(model: Path, src: Path, out: Path, *flags: str) -> list[str]:
    return ["predict", "--input", str(src), "--out", str(out), "--model", str(model), "--backend", "torch", *flags]


def _predict(model: Path, src: Path, out: Path, *flags: str) -> int:
    from clinsynth.app.cli import main

    return main(_predict_args(model, src, out, *flags))


def _command(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in a child process, from the project root, its output captured."""
    from clinsynth.paths import PROJECT_ROOT

    return subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def _predict_in_child(model: Path, src: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return _command("clinsynth", *_predict_args(model, src, out, *flags))


def _label_in_child(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _command("programs.label", *args, env=subprocess_env(tmp_path))


def _engine(address: str) -> Any:
    from clinsynth.jobs.engine_ray import RayEngine

    return RayEngine(address=address, shard_size=PREDICT_SHARD, show_progress=False)


def _in_child(target: Callable[..., None], *args: Any) -> None:
    """``target(*args)`` in a fresh interpreter (spawned, not forked: pytest's process holds threads)."""
    child = multiprocessing.get_context("spawn").Process(target=target, args=args)
    child.start()
    child.join(timeout=600)
    assert child.exitcode == 0, f"{target.__name__} in a child process ended with {child.exitcode}"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _assert_same_predictions(local: Path, other: Path) -> None:
    a, b = _rows(local), _rows(other)
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert [r["labels"] for r in a] == [r["labels"] for r in b]
    assert [r["text"] for r in a] == [r["text"] for r in b]
    worst = max(abs(r["scores"][k] - s["scores"][k]) for r, s in zip(a, b, strict=True) for k in r["scores"])
    assert worst <= 1e-5


@pytest.fixture(scope="module")
def local_predictions(model_dir: Path, corpus_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "pred.jsonl"
    assert _predict(model_dir, corpus_input, out) == 0
    return out


def test_predict_on_ray_matches_the_local_engine(model_dir, corpus_input, local_predictions, ray_address, tmp_path,
                                                 ):  # fmt: skip
    out = tmp_path / "pred.jsonl"
    done = _predict_in_child(model_dir, corpus_input, out, "--engine", "ray", "--ray-address", ray_address,
                             "--shard-size", str(PREDICT_SHARD))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert len(_rows(out)) == N_SENTENCES
    _assert_same_predictions(local_predictions, out)
    assert f"{N_SENTENCES} sentences" in done.stdout
    assert not (tmp_path / "pred.jsonl.shards").exists()  # merged, then removed


class _Killed(BaseException):
    """A kill between the last shard written and the merge."""


def _predict_killed_before_merge(model_dir: Path, src: Path, out: Path, address: str) -> None:
    """In a child: a Ray predict that dies after every shard is written, before the merge."""
    from clinsynth.jobs import ray_predict

    def killed(*args: Any, **kwargs: Any) -> None:
        raise _Killed

    ray_predict.atomic_open = killed
    try:
        ray_predict.predict_with_ray(model_dir, src, out, _engine(address), backend="torch")
    except _Killed:
        return
    raise AssertionError("the run reached its merge")


def _predict_resumed(model_dir: Path, src: Path, out: Path, address: str, result: Path) -> None:
    """In a child: the rerun, with the shards it sends to Ray and its summary written to ``result``."""
    from clinsynth.jobs import ray_predict

    sent: list[int] = []
    real_map = ray_predict.map_shards

    def spy(engine: Any, payloads: Any, worker: Any, kwargs: Any) -> Any:
        sent.extend(p["shard"] for p in payloads)
        return real_map(engine, payloads, worker, kwargs)

    ray_predict.map_shards = spy
    done = ray_predict.predict_with_ray(model_dir, src, out, _engine(address), backend="torch")
    result.write_text(json.dumps({"sent": sent, "sentences": done["sentences"]}))


def test_a_killed_predict_resumes_by_shard(model_dir, corpus_input, local_predictions, ray_address, tmp_path):
    out = tmp_path / "pred.jsonl"
    _in_child(_predict_killed_before_merge, model_dir, corpus_input, out, ray_address)
    shards = out.with_name("pred.jsonl.shards")
    assert not out.exists() and sorted(p.name for p in shards.glob("part-*.jsonl")) == [
        "part-00000.jsonl",
        "part-00001.jsonl",
    ]
    # Lose shard 1, and leave a temporary file a kill mid-write would leave.
    (shards / "part-00001.jsonl").unlink()
    (shards / "part-00001.jsonl.999.dead.tmp").write_text('{"id": "torn')
    result = tmp_path / "resumed.json"
    _in_child(_predict_resumed, model_dir, corpus_input, out, ray_address, result)
    resumed = json.loads(result.read_text())

    assert resumed["sent"] == [1]  # the finished shard was not computed again
    assert resumed["sentences"] == N_SENTENCES and not shards.exists()
    _assert_same_predictions(local_predictions, out)


def test_shards_of_another_run_are_discarded_not_merged(tmp_path):
    from clinsynth.jobs.engine_ray import ShardStore

    out = tmp_path / "o.jsonl"
    ShardStore(out, "run-a").open().write(0, ['{"id": "a"}'])
    assert ShardStore(out, "run-a").open().done(0)
    assert not ShardStore(out, "run-b").open().done(0)  # other input, model or settings


def test_predict_shards_must_hold_whole_scoring_batches(model_dir, corpus_input, ray_address, tmp_path, capsys):
    flags = ("--engine", "ray", "--ray-address", ray_address, "--shard-size", "100")
    assert _predict(model_dir, corpus_input, tmp_path / "o.jsonl", *flags) == 2
    assert "multiple of 256" in capsys.readouterr().err
    assert _predict(model_dir, corpus_input, tmp_path / "o.jsonl", "--shard-size", "256") == 2  # local: no Ray flags
    assert "only apply with --engine ray" in capsys.readouterr().err


# ---------------------------------------------------------------- label through a shared endpoint


def test_label_on_ray_records_per_record_failures_as_the_local_engine(task_dir, ray_address, tmp_path, fake_openai,
                                                                      capsys):  # fmt: skip
    bad = {SENTENCES[1], SENTENCES[9], SENTENCES[17]}  # one in each of three shards of 8

    def fault(sentence: str, body: dict, nth: int):
        return (200, answer("FLYING")) if sentence in bad else None  # out of taxonomy, every try

    src = write_input(tmp_path)
    outputs, requests, errors = {}, {}, {}
    with fake_openai(Script(fault)) as server:
        for engine in ("local", "ray"):
            sent = len(server.requests)
            out = tmp_path / engine / "silver.jsonl"
            flags = ["--attempts", "2", "--no-parquet"]
            if engine == "ray":
                flags += ["--engine", "ray", "--ray-address", ray_address, "--shard-size", "8", "--ray-workers", "2"]
                done = _label_in_child(tmp_path, *label_args(task_dir, server.api_base, src, out, *flags))
                code, errors[engine] = done.returncode, done.stderr
            else:
                code, _ = label(*label_args(task_dir, server.api_base, src, out, *flags))
                errors[engine] = capsys.readouterr().err
            assert code == 1, errors[engine]  # failures beyond --max-failures 0
            outputs[engine] = out
            requests[engine] = len(server.requests) - sent
    local, distributed = outputs["local"], outputs["ray"]
    assert unique_ids(distributed) == [line_id(s) for s in SENTENCES if s not in bad]  # merged in input order
    assert sorted(unique_ids(local)) == sorted(unique_ids(distributed))
    failures = read_failures(failures_path_for(distributed))
    assert failures.keys() == read_failures(failures_path_for(local)).keys() == {line_id(s) for s in bad}
    for row in failures.values():
        assert row["kind"] == "answer" and row["attempts"] == 2 and "error" in row and row["text"] in bad
    records = {r.id: r for r in read_records(distributed)}
    assert records[line_id(SENTENCES[0])].provenance.attributes["attempts"] == 1
    assert "3 sentences failed" in errors["ray"] and "3 sentences failed" in errors["local"]
    assert not distributed.with_name("silver.jsonl.shards").exists()

    # The endpoint recovers: a rerun labels only the failed records, with samples not tried before.
    with fake_openai(Script()) as server:
        args = label_args(task_dir, server.api_base, src, distributed, "--no-parquet", "--engine", "ray",
                          "--ray-address", ray_address, "--shard-size", "8")  # fmt: skip
        done = _label_in_child(tmp_path, *args)
        assert done.returncode == 0, done.stderr
        assert len(server.requests) == len(bad) and all(r.get("temperature") for r in server.requests)
    assert sorted(unique_ids(distributed)) == sorted(line_id(s) for s in SENTENCES)
    assert not failures_path_for(distributed).exists()
    retried = {r.id: r.provenance.attributes for r in read_records(distributed) if r.id in failures}
    assert all(a["rollout"] >= 2 for a in retried.values())  # past the two rollouts spent
    runs = [json.loads(line) for line in distributed.with_name("silver.jsonl.runs.jsonl").read_text().splitlines()]
    assert [r["usage"]["calls"] for r in runs] == [requests["ray"], len(bad)]  # the workers' usage, summed
    assert requests["ray"] == requests["local"]


def test_the_privacy_gate_stops_a_ray_run_on_the_driver(ray_address, tmp_path, fake_openai, capsys):
    with FakeOpenAI(lambda body: (200, answer())) as server:
        remote = (server.api_base.rsplit("/", 1)[0] + "/*",)  # the loopback server counts as remote
        task = write_task(tmp_path / "task", remote=remote)
        out = tmp_path / "o.jsonl"
        code, _ = label(*label_args(task, server.api_base, write_input(tmp_path, 4), out, "--engine", "ray",
                                    "--ray-address", ray_address))  # fmt: skip
        assert code == 2 and "refusing to send private data" in capsys.readouterr().err
        assert server.requests == [] and not out.exists() and not out.with_name("o.jsonl.shards").exists()


def test_the_embedded_llm_is_refused_on_ray(task_dir, tmp_path, capsys):
    from clinsynth.programs import label as label_cli

    src = write_input(tmp_path, 2)
    code = label_cli.main(["--task", str(task_dir), "--input", str(src), "--out", str(tmp_path / "o.jsonl"),
                           "--zero-shot", "--engine", "ray"])  # fmt: skip
    assert code == 2 and "--api-base" in capsys.readouterr().err


def test_a_dead_endpoint_stops_a_ray_run_with_one_message_and_no_empty_files(task_dir, ray_address, tmp_path):
    from clinsynth.llm.lm import free_loopback_port

    out = tmp_path / "silver.jsonl"
    dead = f"http://127.0.0.1:{free_loopback_port()}/v1"
    # Sentences no other test sent: the workers' DSPy cache (one for the module) must not answer them.
    src = tmp_path / "in.txt"
    src.write_text("".join(f"Sentence {i} for a dead endpoint.\n" for i in range(20)))
    done = _label_in_child(tmp_path, *label_args(task_dir, dead, src, out, "--attempts", "1", "--engine", "ray",
                                       "--ray-address", ray_address, "--shard-size", "8"))  # fmt: skip
    err = done.stderr
    assert done.returncode == 2 and "is not answering" in err and "Rerun to resume" in err, err
    assert f"failures in {failures_path_for(out)}" in err  # the run's files, not a worker's temporary ones
    assert not out.exists() and not out.with_name("silver.jsonl.shards").exists()
    failures = read_failures(failures_path_for(out))  # what was tried is recorded, as the local engine does
    assert failures and {f["kind"] for f in failures.values()} == {"transport"}


def test_without_the_extra_the_engine_names_it(monkeypatch):
    from clinsynth.errors import ClinsynthError
    from clinsynth.jobs.engine_ray import require_ray

    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if not installed
    with pytest.raises(ClinsynthError, match=r"\.\[scale\]"):
        require_ray()


def test_a_cluster_that_asks_for_a_token_is_named_in_the_error(monkeypatch):
    """What Ray 2.60 raises for a head in token mode reached by explicit address without RAY_AUTH_MODE=token."""
    from ray.exceptions import AuthenticationError

    from clinsynth.errors import ClinsynthError
    from clinsynth.jobs.engine_ray import RayEngine, ray_session

    def refused(**kwargs):
        try:
            raise RuntimeError("Failed to connect to GCS") from AuthenticationError("InvalidAuthToken: missing")
        except RuntimeError as exc:
            raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from exc

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr("clinsynth.jobs.engine_ray.check_reachable", lambda address: None)  # a head listens there
    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: refused())
    with pytest.raises(ClinsynthError) as caught, ray_session(RayEngine(address="10.0.0.1:6379")):
        pass
    message = str(caught.value)
    assert "10.0.0.1:6379" in message and "RAY_AUTH_MODE=token" in message and "--ray-address auto" in message

    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: (_ for _ in ()).throw(ConnectionError("no")))
    with pytest.raises(ClinsynthError) as caught, ray_session(RayEngine(address="10.0.0.1:6379")):
        pass
    assert "RAY_AUTH_MODE" not in str(caught.value)  # only when the cluster asked for a token


def test_a_run_without_an_address_starts_a_cluster_of_its_own(monkeypatch):
    """Ray's default address first tries the cluster named in /tmp/ray/ray_current_cluster, a file any
    ``ray start --head`` leaves behind once its head is gone: the run then waited on a dead address and failed."""
    from clinsynth.jobs.engine_ray import RayEngine, ray_session

    asked: list[str | None] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kwargs: asked.append(address))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr("clinsynth.jobs.engine_ray.check_reachable", lambda address: None)  # a head listens there
    for engine in (RayEngine(), RayEngine(address="10.0.0.1:6379")):
        with ray_session(engine):
            pass
    assert asked == ["local", "10.0.0.1:6379"]


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://no-such-host.invalid:10001"])
def test_an_unreachable_ray_address_stops_the_run_fast_naming_it(task_dir, tmp_path, capsys, address):
    """Issue 26 row 8: Ray retried an address nothing listens on past 240 s, printing only its own warnings."""
    with FakeOpenAI(lambda body: (200, answer())) as server:
        out = tmp_path / "o.jsonl"
        code, seconds = label(*label_args(task_dir, server.api_base, write_input(tmp_path, 2), out, "--engine", "ray",
                                          "--ray-address", address))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and seconds < 30 and f"could not reach Ray at {address}" in err
    assert server.requests == [] and not out.exists()


class _FailsOnShardTwo:
    """A worker that doubles its shard's number and crashes on shard 2."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        shard = payload["shard"]
        if shard == 2:
            raise ValueError("shard 2 is broken")
        return {"shard": shard, "double": 2 * shard, "workers": self.workers}


def _map_until_the_crash(address: str, result: Path) -> None:
    from clinsynth.errors import ClinsynthError
    from clinsynth.jobs.engine_ray import map_shards

    payloads = [{"shard": k} for k in range(6)]
    seen: list[dict[str, Any]] = []
    try:
        with map_shards(_engine(address), payloads, _FailsOnShardTwo, lambda workers: {"workers": workers}) as rows:
            seen.extend(rows)
    except ClinsynthError as exc:
        result.write_text(json.dumps({"error": str(exc), "rows": seen}))


def test_a_crashed_worker_stops_the_run_with_its_error_and_the_driver_exits_cleanly(ray_address, tmp_path):
    result = tmp_path / "result.json"
    _in_child(_map_until_the_crash, ray_address, result)  # exit code 0: no fatal exit after leaving early
    done = json.loads(result.read_text())
    assert done["error"].startswith("a Ray worker failed") and "shard 2 is broken" in done["error"]
    # Shards 0 and 1 go first (the test cluster has 2 CPUs), so one of them finishes before shard 2 starts.
    assert done["rows"] and all(row["double"] == 2 * row["shard"] and row["shard"] != 2 for row in done["rows"])
    assert {row["workers"] for row in done["rows"]} <= {1, 2}  # each actor was built with the pool's size

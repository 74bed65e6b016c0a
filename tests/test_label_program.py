import json
from pathlib import Path

import dspy
import pytest
from clinsynth.programs import label as label_cli
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.steps import label as step
from dspy.utils import DummyLM

from clinsynth.data.privacy import Endpoint, Sensitivity
from clinsynth.data.records import InputItem, read_records
from clinsynth.data.task import load_task
from clinsynth.fingerprint import program_sha256
from clinsynth.jobs.resumable import MapSettings
from clinsynth.llm.lm import LMHandle, make_lm
from tests.conftest import ad_taxonomy, chat_reply, write_task

ITEMS = [
    InputItem(id=f"s{i}", text=t, note_id="mts-1")
    for i, t in enumerate(["She is disoriented to time.", "MMSE 24/30.", "The wound was closed."])
]
QUIET = MapSettings(show_progress=False)


def dummy_handle(answers: list[dict], endpoint: Endpoint | None = None) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(
        lm=DummyLM(answers, adapter=adapter),
        adapter=adapter,
        endpoint=endpoint or Endpoint("openai/dummy", "http://127.0.0.1:1/v1"),
        name="dummy",
    )


def label_items(tmp_path: Path, items: list[InputItem], handle, out: Path, samples: int = 1, **settings):
    """Label ``items`` (written as a JSONL input file) through the step with an injected handle."""
    src = tmp_path / f"in-{len(items)}.jsonl"
    src.write_text("".join(json.dumps({"id": i.id, "text": i.text, "note_id": i.note_id}) + "\n" for i in items))
    task = load_task(write_task(tmp_path / "task"))
    config = step.LabelConfig(
        input=src, zero_shot=True, seed=7, samples=samples, map=MapSettings(show_progress=False, **settings),
        parquet=False,
    )  # fmt: skip
    return step.label_sentences(task, config, out, handle=handle)


def test_forward_returns_canonical_categories_and_drops_none():
    program = DataToLabel(ad_taxonomy())
    handle = dummy_handle([{"categories": ["DIAGNOSIS", "NONE", "COGNITIVE_IMPAIRMENT"]}])
    with handle.context():
        assert program(sentence="x").categories == ["COGNITIVE_IMPAIRMENT", "DIAGNOSIS"]


def test_label_items_writes_records_with_provenance_and_resumes(tmp_path: Path):
    taxonomy = ad_taxonomy()
    program = DataToLabel(taxonomy)
    out = tmp_path / "silver.jsonl"
    answers = [{"categories": ["COGNITIVE_IMPAIRMENT"]}, {"categories": ["COGNITIVE_TESTING"]}, {"categories": []}]
    summary = label_items(tmp_path, ITEMS[:2], dummy_handle(answers), out)
    assert (summary.labelled, summary.skipped, summary.failed) == (2, 0, 0)

    summary = label_items(tmp_path, ITEMS, dummy_handle(answers[2:]), out)
    assert (summary.labelled, summary.skipped) == (1, 2)
    records = read_records(out, taxonomy)
    assert [(r.id, r.labels) for r in records] == [
        ("s0", ["COGNITIVE_IMPAIRMENT"]),
        ("s1", ["COGNITIVE_TESTING"]),
        ("s2", []),
    ]
    prov = records[0].provenance
    assert prov.lm == "dummy" and prov.program == "clinsynth.programs.data_to_label.DataToLabel" and prov.seed == 7
    assert prov.program_sha256 == program_sha256(program, taxonomy.guideline_text)
    assert prov.created_at.startswith("20")


def test_unparseable_answers_are_retried_then_recorded_and_retried_next_run(tmp_path: Path):
    out = tmp_path / "silver.jsonl"
    bad = [{"categories": ["NOT_A_CATEGORY"]}] * 3
    summary = label_items(tmp_path, ITEMS[:1], dummy_handle(bad), out, attempts=3)
    assert (summary.labelled, summary.failed) == (0, 1)
    (failure,) = [json.loads(x) for x in out.with_name("silver.jsonl.failures.jsonl").read_text().splitlines()]
    assert failure["id"] == "s0" and failure["attempts"] == 3 and failure["error"]

    good = [{"categories": ["COGNITIVE_IMPAIRMENT"]}]
    summary = label_items(tmp_path, ITEMS[:1], dummy_handle(good), out)
    assert (summary.labelled, summary.failed) == (1, 0)
    assert not out.with_name("silver.jsonl.failures.jsonl").exists()


def test_server_errors_and_refused_connections_are_recorded_per_record(tmp_path: Path, fake_openai):
    def reply(body: dict) -> tuple[int, dict]:
        if "She is disoriented to time" in json.dumps(body["messages"][-1]):
            return 500, {"error": {"message": "boom", "type": "server_error"}}
        return 200, chat_reply('{"categories": ["COGNITIVE_TESTING"]}')

    with fake_openai(reply) as server:
        handle = make_lm("openai/fake", api_base=server.api_base, num_retries=0, cache=False)
        summary = label_items(tmp_path, ITEMS[:2], handle, tmp_path / "a.jsonl", max_consecutive_failures=5)
    assert (summary.labelled, summary.failed) == (1, 1)
    assert [r.id for r in read_records(tmp_path / "a.jsonl")] == ["s1"]

    closed = make_lm("openai/fake", api_base=server.api_base, num_retries=0, cache=False, timeout=5)
    summary = label_items(tmp_path, ITEMS[:2], closed, tmp_path / "b.jsonl", attempts=2, max_consecutive_failures=5)
    assert (summary.labelled, summary.failed) == (0, 2)
    failures = (tmp_path / "b.jsonl.failures.jsonl").read_text()
    assert "Connection" in failures


def _gold_file(tmp_path: Path) -> Path:
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        json.dumps(
            {
                "id": "g1",
                "text": "Patient is confused.",
                "labels": ["COGNITIVE_IMPAIRMENT"],
                "source": "gold",
                "note_id": "mts-9",
                "split": "dev",
            }
        )
        + "\n"
    )
    return gold


def test_cli_refuses_private_gold_file_to_remote_model(tmp_path: Path, capsys):
    out = tmp_path / "out.jsonl"
    code = label_cli.main(
        [
            "--task",
            str(write_task(tmp_path / "task")),
            "--lm",
            "openai/gpt-4o-mini",
            "--input",
            str(_gold_file(tmp_path)),
            "--out",
            str(out),
            "--sensitivity",
            "public",
            "--no-progress",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to send private data" in err and "openai/gpt-4o-mini" in err
    assert not out.exists()


def test_cli_sends_gold_once_the_endpoint_is_approved(tmp_path: Path, monkeypatch):
    task = write_task(tmp_path / "task", approved=("openai/gpt-4o-mini",))
    handle = dummy_handle([{"categories": ["COGNITIVE_IMPAIRMENT"]}], endpoint=Endpoint("openai/gpt-4o-mini"))
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: handle)
    out = tmp_path / "out.jsonl"
    code = label_cli.main(
        ["--task", str(task), "--lm", "openai/gpt-4o-mini", "--input", str(_gold_file(tmp_path)), "--out", str(out),
         "--no-progress", "--zero-shot"]
    )  # fmt: skip
    assert code == 0
    assert [r.labels for r in read_records(out)] == [["COGNITIVE_IMPAIRMENT"]]


def test_unmarked_user_files_default_to_private_and_can_be_declared_public(tmp_path: Path):
    items = [InputItem(id="1", text="x")]
    user_file = tmp_path / "notes.txt"
    assert step.input_sensitivity(items, None, user_file).value == "private"
    assert step.input_sensitivity(items, Sensitivity.PUBLIC, user_file).value == "public"
    gold_items = [InputItem(id="1", text="x", source="gold")]
    assert step.input_sensitivity(gold_items, Sensitivity.PUBLIC, user_file).value == "private"
    assert step.input_sensitivity(items, None, None).value == "public"  # the bundled corpus
    # A file under the task's gold folder is private whatever it is called or declared.
    gold_dir = tmp_path / "annotations"
    assert step.input_sensitivity(items, Sensitivity.PUBLIC, gold_dir / "x.txt", gold_dir).value == "private"


@pytest.mark.parametrize("model", ["gpt-4o-mini", "llama3"])
def test_model_strings_need_a_provider(model: str):
    from clinsynth.errors import LMSetupError

    with pytest.raises(LMSetupError, match="provider prefix"):
        make_lm(model)
    from clinsynth.data.task import LMSpec
    from clinsynth.llm.session import resolve_endpoint

    with pytest.raises(LMSetupError, match="provider prefix"):
        resolve_endpoint(LMSpec(model))


def test_missing_corpus_or_malformed_taxonomy_fail_clearly_and_write_nothing(tmp_path: Path, capsys):
    out = tmp_path / "out.jsonl"
    task = write_task(tmp_path / "t1", extra="")
    toml = (task / "clinsynth.toml").read_text()
    (task / "clinsynth.toml").write_text(toml.replace("mtsamples.csv.gz", "gone.csv.gz"))
    assert label_cli.main(["--task", str(task), "--out", str(out)]) == 2
    assert "gone.csv.gz: corpus file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncategories:\n  - {name: A, definition: d}\n  - {name: A, definition: e}\n")
    assert label_cli.main(["--task", str(write_task(tmp_path / "t2", taxonomy=bad)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "duplicate category name 'A'" in err
    assert not out.exists()


def test_rerun_with_everything_done_starts_no_lm(tmp_path: Path, monkeypatch, capsys):
    src = tmp_path / "in.txt"
    src.write_text("He is confused.\n")
    out = tmp_path / "out.jsonl"
    handle = dummy_handle([{"categories": ["COGNITIVE_IMPAIRMENT"]}])
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: handle)
    args = ["--task", str(write_task(tmp_path / "t")), "--zero-shot", "--input", str(src), "--out", str(out),
            "--no-progress"]  # fmt: skip
    assert label_cli.main(args) == 0

    def no_lm(*a, **k):
        raise AssertionError("an LM was started with nothing to do")

    monkeypatch.setattr("clinsynth.llm.session.make_lm", no_lm)
    assert label_cli.main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert len(read_records(out)) == 1


def test_records_carry_confidence_from_sample_agreement(tmp_path: Path):
    taxonomy = ad_taxonomy()
    answers = [{"categories": ["COGNITIVE_IMPAIRMENT"]}, {"categories": ["COGNITIVE_IMPAIRMENT"]}, {"categories": []}]
    out = tmp_path / "s.jsonl"
    label_items(tmp_path, ITEMS[:1], dummy_handle(answers), out, samples=3)
    (record,) = read_records(out, taxonomy)
    assert record.labels == ["COGNITIVE_IMPAIRMENT"]
    assert record.provenance.confidence == pytest.approx(2 / 3, abs=1e-3)
    assert record.provenance.attributes["confidence_method"] == "agreement@3"


def test_a_rerun_gets_fresh_samples_instead_of_replaying_cached_failures(tmp_path: Path, fake_openai):
    """With the LM cache on, the same prompt and rollout return the cached bad answer; a
    rerun must start past the rollouts the failed run used."""
    out = tmp_path / "silver.jsonl"
    replies = iter([json.dumps({"categories": ["NOT_A_CATEGORY"]})] * 3 + [json.dumps({"categories": []})] * 10)

    with fake_openai(lambda body: (200, chat_reply(next(replies)))) as server:
        handle = make_lm("openai/fake", api_base=server.api_base, num_retries=0, cache=True, adapter="json")
        first = label_items(tmp_path, ITEMS[:1], handle, out, attempts=3)
        second = label_items(tmp_path, ITEMS[:1], handle, out, attempts=3)
        requests = len(server.requests)
    assert (first.failed, second.labelled) == (1, 1)
    assert requests == 4  # three failed rollouts, then one fresh one (not three cache hits)


def test_silver_flag_makes_the_task_silver_set_with_its_label_settings(tmp_path: Path, monkeypatch, capsys):
    task_dir = write_task(tmp_path / "t", extra="[label]\nlimit = 3\npool = 60\n")
    answers = [{"categories": []}] * 3
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: dummy_handle(answers))
    assert label_cli.main(["--task", str(task_dir), "--silver", "--zero-shot", "--no-progress", "--no-parquet"]) == 0
    task = load_task(task_dir)
    records = read_records(task.silver)
    assert len(records) == 3 and all(r.note_id for r in records)  # the corpus, prefiltered, limit from [label]
    assert label_cli.main(["--task", str(task_dir), "--silver", "--input", str(task.silver)]) == 2
    assert "leave out --input" in capsys.readouterr().err

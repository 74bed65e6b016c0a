import json
import re
from pathlib import Path

import dspy
import pytest
from clinsynth.programs import generate as gen_cli
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.label_to_data import LabelToData, call_rollout
from clinsynth.programs.steps.bronze import (
    GENERATION_TEMPERATURE,
    PROGRAM_NAME,
    BronzeConfig,
    BronzeResult,
    generate_bronze,
)

from clinsynth.data import bronze_filters as bf
from clinsynth.data.privacy import Sensitivity
from clinsynth.data.records import Record, read_records, write_records
from clinsynth.data.task import LMSpec, PrivacyPolicy, Task, load_task
from clinsynth.errors import ClinsynthError, PrivacyError
from clinsynth.jobs.resumable import EndpointError, MapSettings
from clinsynth.llm.session import DemoSource, open_lm
from tests.bow import bow_embed
from tests.conftest import chat_reply, write_task

GOLD = ["Temperature 39.2 C.", "Coughing all night."]
WORDS = iter(f"w{k}" for k in range(10_000))


class ScriptedLM:
    """Answers generation and labelling prompts like a small, imperfect model would."""

    def __init__(self, fail_generation_after: int | None = None) -> None:
        self.fail_generation_after = fail_generation_after
        self.generation_requests = 0
        self.label_requests = 0

    def __call__(self, body: dict) -> tuple[int, dict]:
        prompt = "\n".join(str(m["content"]) for m in body["messages"])
        if "Write new sentences" in prompt:
            self.generation_requests += 1
            if self.fail_generation_after is not None and self.generation_requests > self.fail_generation_after:
                return 500, {"error": {"message": "overloaded"}}
            target = prompt.split("[[ ## target ## ]]")[-1]
            w = next(WORDS)
            if "(label NONE)" in target:
                sentences = [f"Denies fever {w} or chills.", f"Cough {w} resolved last week."]
            elif "FEVER:" in target:
                sentences = [f"Fever spiked {w} times overnight.", "Seen by Dr. Smith for fever.", GOLD[0]]
            else:
                # The third repeats its request instead of writing a note.
                sentences = [f"Coughing fits {w} in the mornings.", f"Mild {w} rash on both arms.",
                             f"Each sentence documents cough {w} (category COUGH)."]  # fmt: skip
            return 200, chat_reply(json.dumps({"sentences": sentences}))
        self.label_requests += 1
        # The sentence is the line after its marker (DSPy's chat adapter adds format notes below it).
        sentence = prompt.split("[[ ## sentence ## ]]")[-1].strip().split("\n")[0].lower()
        labels = []
        if "fever" in sentence and "denies" not in sentence:
            labels.append("FEVER")
        if "cough" in sentence:
            labels.append("COUGH")
        return 200, chat_reply(json.dumps({"categories": labels}))


def make_task(tmp_path: Path, taxonomy_path: Path, generator: tuple[str, str | None] = ("local", None)) -> Task:
    """A task on the two-category taxonomy whose gold (the leakage reference) is GOLD."""
    gold = tmp_path / "gold"
    gold.mkdir(exist_ok=True)
    rows = [Record(f"g{i}", text, [], "gold", note_id=f"n{i}", split="train") for i, text in enumerate(GOLD)]
    write_records(gold / "train.jsonl", rows)
    model, api_base = generator
    lines = ["[lm.generator]", f'model = "{model}"', *([f'api_base = "{api_base}"'] if api_base else [])]
    return load_task(write_task(tmp_path / "task", taxonomy=taxonomy_path, gold=gold, extra="\n".join(lines)))


def config(**overrides) -> BronzeConfig:
    settings = MapSettings(
        attempts=overrides.pop("attempts", 3),
        max_consecutive_failures=overrides.pop("max_consecutive_failures", 3),
        show_progress=False,
    )
    small = dict(per_category=3, negatives=2, multi_label=0, per_call=3, overgenerate=1.0)
    return BronzeConfig(**{**small, **overrides}, map=settings)


def run(tmp_path: Path, server, task: Task, **cfg) -> BronzeResult:
    """The step with an LM handle on the fake server (no retries inside litellm, no cache)."""
    handle = open_lm(
        LMSpec("openai/fake", server.api_base), "generator", PrivacyPolicy(), num_retries=0, cache=False, adapter="json"
    )
    labeler, generator = DataToLabel(task.taxonomy), LabelToData(task.taxonomy, n=3)
    return generate_bronze(task, config(**cfg), tmp_path / "bronze.jsonl", handle, generator, labeler, bow_embed)


@pytest.fixture
def task(tmp_path: Path, mini_taxonomy_path: Path) -> Task:
    return make_task(tmp_path, mini_taxonomy_path)


def test_generates_filters_and_counts_every_drop(tmp_path: Path, mini_taxonomy_path: Path, fake_openai):
    with fake_openai(ScriptedLM()) as server:
        # The task's own generator LM, opened by the step through the session (no injected handle).
        task = make_task(tmp_path, mini_taxonomy_path, generator=("openai/fake", server.api_base))
        out = tmp_path / "new" / "folder" / "bronze.jsonl"  # parents are created
        result = generate_bronze(task, config(), out, embed=bow_embed)
    fever, cough, none = result.counts["FEVER"], result.counts["COUGH"], result.counts["NONE"]
    # Three rounds of one call each: one good sentence a call survives.
    assert fever["kept"] == 3 and fever["generated"] == 9
    assert fever[bf.PHI] == 3 and fever[bf.LEAKAGE] == 1 and fever[bf.EXACT_DUPLICATE] == 2
    assert cough["kept"] == 3 and cough[bf.ROUND_TRIP] == 3  # the rash sentences
    assert cough[bf.ECHO] == 3 and cough["generated"] == 9  # dropped before the round trip costs a call
    assert none["kept"] == 2 and none[bf.ROUND_TRIP] == 2  # "Cough resolved" is not NONE for the labeller
    for counts in result.counts.values():
        dropped = sum(counts[f] for f in (*bf.FILTERS, bf.OVER_QUOTA))
        assert counts["generated"] == dropped + counts["kept"]

    records = read_records(out, task.taxonomy)
    assert len(records) == 8 and {r.source for r in records} == {"bronze"}
    assert not {r.text for r in records} & set(GOLD)
    assert all(not re.search(r"Dr\.", r.text) for r in records)
    for r in records:
        p = r.provenance
        assert p.lm == "openai/fake" and p.program == PROGRAM_NAME and len(p.program_sha256) == 64
        assert p.seed == 0 and p.created_at
        for key in ("target", "note_type", "section", "reporter", "severity", "tense", "length", "roundtrip_labels"):
            assert key in p.attributes, key
    assert sorted(r.labels for r in records if r.provenance.attributes["target"] == "NONE") == [[], []]

    report = json.loads((out.parent / "bronze.jsonl.report.json").read_text())
    assert report["counts"]["FEVER"][bf.PHI] == 3 and report["kept_by_label"]["FEVER"] == 3
    assert report["config"]["attempts"] == 3 and report["lm"] == "openai/fake" and report["task"] == "test_task"
    dropped = [json.loads(line) for line in (out.parent / "bronze.jsonl.dropped.jsonl").open()]
    assert {d["filter"] for d in dropped} == {bf.PHI, bf.LEAKAGE, bf.EXACT_DUPLICATE, bf.ECHO, bf.ROUND_TRIP}
    # the labels each sentence was written for travel with it (the no-round-trip ablation uses them)
    assert all((d["labels"] == []) == (d["target"] == "NONE") for d in dropped)
    assert {tuple(d["labels"]) for d in dropped if d["target"] == "FEVER"} == {("FEVER",)}

    # Each call records the sample it is: its own rollout, at the generator's temperature.
    calls = [json.loads(line) for line in result.calls_path.open()]
    assert calls and all(c["temperature"] == GENERATION_TEMPERATURE for c in calls)
    assert all(c["rollout"] == call_rollout(c["id"]) for c in calls)  # first attempts
    assert result.out == out and result.report_path.exists() and result.dropped_path.exists()
    assert result.failures_path is None and not list(out.parent.glob("*.tmp"))
    header, rows = result.table
    assert header[0] == "target" and header[-1] == "kept" and [r[0] for r in rows] == ["COUGH", "FEVER", "NONE"]


def test_relabel_policy_keeps_drifted_sentences_with_the_labellers_labels(tmp_path: Path, task: Task, fake_openai):
    with fake_openai(ScriptedLM()) as server:
        result = run(tmp_path, server, task, round_trip="relabel", max_rounds=1)
    assert result.counts["COUGH"]["relabelled"] == 1
    rash = next(r for r in result.kept if "rash" in r.text)
    assert rash.labels == [] and rash.provenance.attributes["generated_labels"] == ["COUGH"]


def test_a_rerun_resumes_from_the_calls_already_made(tmp_path: Path, task: Task, fake_openai):
    flaky = ScriptedLM(fail_generation_after=2)
    with fake_openai(flaky) as server:
        # Enough failures allowed in a row that the run ends on its own (see the next test).
        first = run(tmp_path, server, task, attempts=1, max_consecutive_failures=100)
    assert first.failed_calls > 0
    failures = (tmp_path / "bronze.jsonl.failures.jsonl").read_text().splitlines()
    assert len(failures) == first.failed_calls and "overloaded" in failures[0]
    assert first.failures_path == tmp_path / "bronze.jsonl.failures.jsonl"
    made = len((tmp_path / "bronze.jsonl.calls.jsonl").read_text().splitlines())
    assert made == 2

    healthy = ScriptedLM()
    with fake_openai(healthy) as server:
        second = run(tmp_path, server, task)
    assert second.failed_calls == 0 and not (tmp_path / "bronze.jsonl.failures.jsonl").exists()
    assert {t: c["kept"] for t, c in second.counts.items()} == {"FEVER": 3, "COUGH": 3, "NONE": 2}
    # A call that failed before is a fresh sample now: past the rollout its failed attempt used.
    retried = {json.loads(f)["id"] for f in failures}
    calls = {c["id"]: c for c in map(json.loads, (tmp_path / "bronze.jsonl.calls.jsonl").open())}
    assert retried & calls.keys() and all(calls[i]["rollout"] == call_rollout(i) + 1 for i in retried & calls.keys())
    labelled_before = flaky.label_requests

    again = ScriptedLM()
    with fake_openai(again) as server:
        third = run(tmp_path, server, task)
    # Everything is on disk: no LM call at all, the same records.
    assert again.generation_requests == 0 and again.label_requests == 0
    assert [r.text for r in third.kept] == [r.text for r in second.kept]
    assert labelled_before + healthy.label_requests == len(
        (tmp_path / "bronze.jsonl.roundtrip.jsonl").read_text().splitlines()
    )


def test_an_endpoint_that_stops_answering_stops_the_run_and_keeps_what_was_written(
    tmp_path: Path, task: Task, fake_openai, monkeypatch
):
    # The scripted server answers 500 once generation "goes down": a transport failure.
    down = ScriptedLM(fail_generation_after=1)
    with fake_openai(down) as server, pytest.raises(EndpointError, match="not answering"):
        run(tmp_path, server, task, attempts=1, per_category=6, negatives=6, max_rounds=1)
    assert len((tmp_path / "bronze.jsonl.calls.jsonl").read_text().splitlines()) == 1
    assert len((tmp_path / "bronze.jsonl.failures.jsonl").read_text().splitlines()) == 3  # three in a row
    assert not (tmp_path / "bronze.jsonl").exists()


def test_bad_configs_fail_before_anything_starts(tmp_path: Path, task: Task):
    for bad, message in (
        (dict(categories=("FEVERISH",)), r"unknown categories \['FEVERISH'\]"),
        (dict(round_trip="maybe"), "round_trip must be one of"),
        (dict(per_call=0), "per_call must be at least 1"),
        (dict(near_duplicate=1.5), "near_duplicate must be a cosine"),
    ):
        with pytest.raises(ClinsynthError, match=message):
            generate_bronze(task, config(**bad), tmp_path / "b" / "b.jsonl", embed=bow_embed)
    assert not (tmp_path / "b").exists()


def test_cli_rejects_unknown_categories_before_starting_an_lm(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM should start"))
    code = gen_cli.main(["--out", str(tmp_path / "b.jsonl"), "--categories", "FEVERISH", "--no-progress"])
    assert code == 2 and "unknown categories ['FEVERISH']" in capsys.readouterr().err
    assert not (tmp_path / "b.jsonl").exists()


def test_cli_runs_the_step_on_a_task_and_prints_the_counts(
    tmp_path: Path, mini_taxonomy_path: Path, fake_openai, monkeypatch, capsys
):
    monkeypatch.setattr("clinsynth.model.embeddings.encode", bow_embed)  # no MiniLM download in unit tests
    with fake_openai(ScriptedLM()) as server:
        task = make_task(tmp_path, mini_taxonomy_path)  # its generator is 'local': --lm/--api-base override it
        argv = ["--task", str(task.root), "--lm", "openai/fake", "--api-base", server.api_base, "--no-progress",
                "--per-category", "1", "--negatives", "1", "--multi-label", "0", "--max-rounds", "1"]  # fmt: skip
        assert gen_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "| target" in out and "| FEVER" in out and f"{task.bronze}: " in out
    assert read_records(task.bronze, task.taxonomy)  # --out defaults to the task's bronze path
    report = json.loads(task.bronze.with_name(task.bronze.name + ".report.json").read_text())
    assert report["config"]["lm"] == {"model": "openai/fake", "api_base": server.api_base}


def test_the_parser_is_reusable_without_main():
    parser = gen_cli.build_parser(prog="clinsynth generate")
    args = parser.parse_args(["--per-category", "7", "--categories", "FEVER, COUGH"])
    bundled = load_task()  # its [generate] table sets max_rounds = 10
    cfg = gen_cli.config_from_args(args, bundled)
    assert parser.prog == "clinsynth generate" and args.out is None and args.task is None
    assert cfg.per_category == 7 and cfg.categories == ("FEVER", "COUGH") and cfg.lm is None
    assert cfg.resolved().negatives == 7 and cfg.resolved().multi_label == 1
    assert cfg.max_rounds == 10 and cfg.per_call == BronzeConfig().per_call
    assert gen_cli.config_from_args(parser.parse_args(["--max-rounds", "2"]), bundled).max_rounds == 2
    assert gen_cli.config_from_args(parser.parse_args(["--shorthand-share", "1"]), bundled).shorthand_share == 1.0
    with pytest.raises(ClinsynthError, match="shorthand_share"):
        BronzeConfig(shorthand_share=1.5).validate(bundled.taxonomy)
    assert all(a.help for a in parser._actions), "every flag has help"
    assert "the task's [generate] value, else 3" in parser.format_help().replace("\n", " ").replace("  ", " ")


def gold_demo_labeller(task: Task) -> DataToLabel:
    labeler = DataToLabel(task.taxonomy)
    labeler.predictors()[0].demos = [dspy.Example(sentence=GOLD[0], categories=["FEVER"])]
    return labeler


@pytest.fixture
def remote_task(tmp_path: Path, mini_taxonomy_path: Path, monkeypatch) -> Task:
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    return make_task(tmp_path, mini_taxonomy_path, generator=("openai/gpt-4o-mini", None))


def test_a_gold_demo_labeller_never_goes_to_an_unapproved_remote_generator(
    tmp_path: Path, remote_task: Task, monkeypatch
):
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("an LM was built"))
    generator, labeler = LabelToData(remote_task.taxonomy, n=3), gold_demo_labeller(remote_task)
    out = tmp_path / "out" / "bronze.jsonl"
    with pytest.raises(PrivacyError, match=r"round-trip labeller.*openai/gpt-4o-mini"):
        generate_bronze(remote_task, config(), out, generator=generator, labeler=labeler, embed=bow_embed)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_labeller_with_generated_demos_passes_the_gate(tmp_path: Path, remote_task: Task, monkeypatch):
    class Built(Exception):
        pass

    def stop(*args, **kwargs):
        raise Built(args)

    monkeypatch.setattr("clinsynth.llm.session.make_lm", stop)
    generator, labeler = LabelToData(remote_task.taxonomy, n=3), DataToLabel(remote_task.taxonomy)
    # A generated sentence, not a gold one: gold demos are private whatever the record says (issue 26 row 4).
    labeler.predictors()[0].demos = [dspy.Example(sentence="Spiked a fever of 39.2 overnight.", categories=["FEVER"])]
    labeler.demos_from = DemoSource("generated", Sensitivity.SYNTHETIC)
    with pytest.raises(Built, match="openai/gpt-4o-mini"):
        generate_bronze(remote_task, config(), tmp_path / "b.jsonl", generator=generator, labeler=labeler)


def test_a_labeller_whose_gold_demos_are_recorded_synthetic_is_still_refused(tmp_path: Path, remote_task: Task,
                                                                             monkeypatch):  # fmt: skip
    """Issue 26 row 4 for generate: the round-trip labeller's demos are judged by their content."""
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("an LM was built"))
    generator, labeler = LabelToData(remote_task.taxonomy, n=3), gold_demo_labeller(remote_task)
    labeler.demos_from = DemoSource("generated", Sensitivity.SYNTHETIC)
    with pytest.raises(PrivacyError, match=r"round-trip labeller \(its demos come from 1 gold sentences"):
        generate_bronze(remote_task, config(), tmp_path / "b.jsonl", generator=generator, labeler=labeler)


def test_top_up_writes_more_for_the_named_categories_and_keeps_the_rest(tmp_path: Path, task: Task, fake_openai):
    with fake_openai(ScriptedLM()) as server:
        first = run(tmp_path, server, task)
    topping = ScriptedLM()
    with fake_openai(topping) as server:
        # Each scripted COUGH call keeps one sentence (the round trip drops the other): rounds are the limit.
        second = run(tmp_path, server, task, top_up={"COUGH": 2}, max_rounds=6)
    assert {t: c["kept"] for t, c in second.counts.items()} == {"FEVER": 3, "COUGH": 5, "NONE": 2}
    before = {r.id for r in first.kept}
    assert before <= {r.id for r in second.kept}  # nothing written earlier is lost
    new = [r for r in second.kept if r.id not in before]
    assert len(new) == 2 and all(r.provenance.attributes["target"] == "COUGH" for r in new)
    assert topping.generation_requests == 2  # only COUGH calls past the earlier ones, which were reused
    report = json.loads((tmp_path / "bronze.jsonl.report.json").read_text())
    assert report["config"]["top_up"] == {"COUGH": 2}
    with pytest.raises(ClinsynthError, match="top_up"):
        config(top_up={"RASH": 1}).validate(task.taxonomy)


def test_a_rerun_with_fewer_rounds_keeps_what_later_rounds_of_the_first_run_kept(tmp_path: Path, task: Task,
                                                                                  fake_openai):
    with fake_openai(ScriptedLM()) as server:
        # Each scripted COUGH call keeps one sentence: its quota of 3 takes three rounds.
        first = run(tmp_path, server, task, max_rounds=3)
    assert first.rounds == 3 and first.kept_per_target()["COUGH"] == 3
    again = ScriptedLM()
    with fake_openai(again) as server:
        second = run(tmp_path, server, task, max_rounds=1)
    # The first run's calls replay its rounds without spending the rerun's one round.
    assert again.generation_requests == 0
    assert [r.id for r in second.kept] == [r.id for r in first.kept]


def test_the_weakest_categories_come_from_out_of_fold_scores_else_from_dev(tmp_path: Path, task: Task):
    from clinsynth.programs.steps.bronze import weakest_categories

    with pytest.raises(ClinsynthError, match="top-up needs"):
        weakest_categories(task, 1)
    task.model_dir.mkdir(parents=True)
    dev = {"per_category": {"FEVER": {"f1": 0.9}, "COUGH": {"f1": None}}}
    (task.model_dir / "clinsynth.json").write_text(json.dumps({"dev_scores": dev}))
    weakest, source = weakest_categories(task, 1)
    assert weakest == [("COUGH", 0.0)] and source.startswith("gold dev F1 of the default model")
    task.reports_dir.mkdir(parents=True)
    row = {"system": "gold", "kind": "mix", "micro_f1": [0.5, 0], "macro_f1": [0.5, 0],
           "per_category": {"FEVER": [0.2, 0.0], "COUGH": [0.7, 0.0]}}  # fmt: skip
    (task.reports_dir / "augmentation.json").write_text(json.dumps({"folds": 3, "systems": [row]}))
    weakest, source = weakest_categories(task, 2)
    assert weakest == [("FEVER", 0.2), ("COUGH", 0.7)] and source.startswith("out-of-fold F1 of gold")


def test_a_rerun_keeps_out_what_drop_label_issues_took_out(tmp_path: Path, task: Task, fake_openai, monkeypatch):
    import numpy as np
    from clinsynth.programs.steps.bronze import drop_label_issues

    import clinsynth.model.embeddings as embeddings
    import clinsynth.model.label_issues as label_issues

    with fake_openai(ScriptedLM()) as server:
        first = run(tmp_path, server, task)
    out = tmp_path / "bronze.jsonl"
    flagged = first.kept[0]
    monkeypatch.setattr(embeddings, "encode", lambda texts: np.zeros((len(texts), 4)))
    monkeypatch.setattr(label_issues, "find_label_issues",
                        lambda vectors, label_sets, names: [label_issues.LabelIssue(0, 0.125)])  # fmt: skip
    assert [row["id"] for row in drop_label_issues(out, task.taxonomy.names)] == [flagged.id]
    assert flagged.id not in {r.id for r in read_records(out)}

    again = ScriptedLM()
    with fake_openai(again) as server:
        rerun = run(tmp_path, server, task)
    # Rebuilt from the calls file: the flagged sentence stays out, the others stay in, and the
    # target it leaves short of its quota gets a new call.
    assert again.generation_requests >= 1
    kept = [r.id for r in read_records(out)]
    assert flagged.id not in kept and {r.id for r in first.kept[1:]} <= set(kept)
    assert [r.id for r in rerun.kept] == kept
    dropped = [json.loads(line) for line in (tmp_path / "bronze.jsonl.dropped.jsonl").read_text().splitlines()]
    assert [(d["id"], d["detail"]) for d in dropped if d["filter"] == bf.LABEL_ISSUE] == [
        (flagged.id, "label quality 0.125")
    ]
    report = json.loads((tmp_path / "bronze.jsonl.report.json").read_text())
    assert bf.LABEL_ISSUE in report["filters"]
    assert sum(c.get(bf.LABEL_ISSUE, 0) for c in report["counts"].values()) == 1

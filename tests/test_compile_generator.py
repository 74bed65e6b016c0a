import json
from dataclasses import replace
from pathlib import Path

import dspy
import pytest
from clinsynth.programs import compile as compile_cli
from clinsynth.programs.compile_generator import GenerationMetric, default_targets, generation_examples
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.label_to_data import LabelToData
from clinsynth.programs.steps.compile import CompileConfig, compile_program
from dspy.adapters import JSONAdapter
from dspy.utils import DummyLM
from dspy.utils.exceptions import AdapterParseError

from clinsynth.data.privacy import Endpoint
from clinsynth.data.records import Record, write_records
from clinsynth.data.task import LMSpec, load_task
from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.errors import PrivacyError
from clinsynth.llm.compiled import compiled_path, load_compiled, read_metadata
from clinsynth.llm.lm import LMHandle
from tests.bow import bow_embed
from tests.test_generate import ScriptedLM

GOLD_DEV = [
    Record(id="d1", text="Fever spiked overnight to 39 C.", labels=["FEVER"], source="gold"),
    Record(id="d2", text="Wet cough in the mornings.", labels=["COUGH"], source="gold"),
    Record(id="d3", text="Denies chills.", labels=[], source="gold"),
]


@pytest.fixture
def taxonomy(mini_taxonomy_path):
    return load_taxonomy(mini_taxonomy_path)


def test_metric_rewards_agreement_diversity_and_realism(taxonomy):
    example = generation_examples(taxonomy, ["FEVER"], 1, seed=0)[0]
    answers = [{"categories": ["FEVER"]}, {"categories": []}] + [{"categories": ["FEVER"]}] * 2
    labeler_lm = DummyLM(answers, adapter=dspy.JSONAdapter())
    metric = GenerationMetric(DataToLabel(taxonomy), labeler_lm, GOLD_DEV, bow_embed)
    with dspy.context(adapter=dspy.JSONAdapter()):
        good = metric.parts(example, ["Fever spiked overnight to 39 C.", "Rigors and sweats all day."])
        same = metric.parts(example, ["Fever again today.", "Fever again today."])
    assert good["agreement"] == 1 / 5  # of the 5 asked for: one agrees, one is NONE, three are missing
    assert good["realism"] == pytest.approx(0.5)  # one copy of a gold dev sentence, one unrelated
    assert good["diversity"] > 0.9
    assert same["diversity"] == pytest.approx(0.0, abs=1e-6)
    # A sentence equal to a gold dev one is a leak: the call scores 0 and cannot become a demo.
    assert good["leak"] == 1.0 and metric.score(good) == 0.0
    assert metric.score({**good, "leak": 0.0}) == pytest.approx(0.1 + 0.25 * good["diversity"] + 0.125)


def test_with_a_trace_the_metric_gates_demos_on_agreement_variety_and_leaks(taxonomy, monkeypatch):
    example = generation_examples(taxonomy, ["FEVER"], 1, seed=0, n=2)[0]
    metric = GenerationMetric(DataToLabel(taxonomy), None, GOLD_DEV, bow_embed)
    labels = iter([])
    monkeypatch.setattr(metric, "labeler", lambda sentence: dspy.Prediction(categories=next(labels)))
    varied = dspy.Prediction(sentences=["Rigors and sweats all day.", "Febrile again this morning."])
    paraphrases = dspy.Prediction(sentences=["Fever again today.", "Fever again today!"])
    leaked = dspy.Prediction(sentences=["Fever spiked overnight to 39 C.", "Febrile again this morning."])

    def gate(pred: dspy.Prediction, answers: list[list[str]]) -> bool | float:
        nonlocal labels
        labels = iter(answers)
        return metric(example, pred, trace=[])

    assert gate(varied, [["FEVER"], ["FEVER"]]) is True
    assert gate(varied, [["FEVER"], []]) is False  # 1 of 2 asked for agrees
    assert gate(paraphrases, [["FEVER"], ["FEVER"]]) is False  # agreeing but not varied
    assert gate(leaked, [["FEVER"], ["FEVER"]]) is False  # reproduces a gold dev sentence
    labels = iter([["FEVER"], ["FEVER"]])
    assert 0.5 < metric(example, varied) < 1.0  # without a trace: the weighted score


def test_an_unusable_labeller_answer_counts_as_disagreement_not_a_failed_call(taxonomy, monkeypatch):
    example = generation_examples(taxonomy, ["FEVER"], 1, seed=0, n=2)[0]
    metric = GenerationMetric(DataToLabel(taxonomy), None, GOLD_DEV, bow_embed)

    def labeler(sentence: str) -> dspy.Prediction:
        if "sweats" in sentence:
            raise AdapterParseError(JSONAdapter, DataToLabel(taxonomy).label.signature, '{"categories": ["CHILLS"]}')
        return dspy.Prediction(categories=["FEVER"])

    monkeypatch.setattr(metric, "labeler", labeler)
    parts = metric.parts(example, ["Rigors and sweats all day.", "Febrile again this morning."])
    assert parts["agreement"] == 0.5 and parts["diversity"] > 0.5


def test_targets_and_examples_cover_dev_categories_none_and_multi(taxonomy):
    targets = default_targets(taxonomy, GOLD_DEV)
    assert targets == ["FEVER", "COUGH", "NONE", "MULTI"]
    dev = generation_examples(taxonomy, targets, 1, seed=0, start=0)
    train = generation_examples(taxonomy, targets, 2, seed=0, start=1000)
    assert len(dev) == 4 and len(train) == 8
    assert not {e.constraints for e in dev} & {e.constraints for e in train} or dev[0] != train[0]
    assert dev[2].target_labels == [] and "(label NONE)" in dev[2].target


@pytest.mark.parametrize("optimizer", ["bootstrap", "random-search"])
def test_compile_label_to_data_writes_a_loadable_program(
    optimizer, tmp_path: Path, taxonomy, mini_taxonomy_path, task_dir, fake_openai, monkeypatch, capsys
):
    dev_path = tmp_path / "dev.jsonl"
    write_records(dev_path, GOLD_DEV)
    monkeypatch.setattr("clinsynth.model.embeddings.encode", bow_embed)
    # the scripted LM writes 2-3 of 5
    monkeypatch.setattr("clinsynth.programs.compile_generator.DEMO_MIN_AGREEMENT", 0.2)
    out = tmp_path / "label_to_data.fake.json"
    with fake_openai(ScriptedLM()) as server:
        code = compile_cli.main(
            [
                "--task",
                str(task_dir),
                "--program",
                "label-to-data",
                "--optimizer",
                optimizer,
                "--trials",
                "1",
                "--lm",
                "openai/fake",
                "--api-base",
                server.api_base,
                "--dev",
                str(dev_path),
                "--taxonomy",
                str(mini_taxonomy_path),
                "--out",
                str(out),
            ]
        )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "| FEVER" in printed and "| overall" in printed
    meta = read_metadata(out)["clinsynth"]
    assert meta["program"] == "label-to-data" and meta["optimizer"] == optimizer
    assert set(meta["dev_after"]["per_target"]) == {"FEVER", "COUGH", "NONE", "MULTI"}
    # random-search scores its candidates on calls of their own, not on dev
    assert meta["selection_calls"] == (4 if optimizer == "random-search" else 0)
    # what random search compared, best first: zero-shot (-3), first good calls (-1), one shuffled set
    assert {c["seed"] for c in meta["candidates"]} == ({-3, -1, 0} if optimizer == "random-search" else set())
    loaded = load_compiled(LabelToData(taxonomy), out, taxonomy)
    assert len(loaded.generate.demos) == meta["demos"]
    if optimizer == "bootstrap":
        assert 1 <= meta["demos"] <= 2  # bootstrapped from the program's own good calls
    assert all(d["sentences"] for d in json.loads(out.read_text())["generate"]["demos"])
    # Demos are generated sentences (synthetic); none: nothing in the prompts but the guideline.
    expected = {"data": "generated sentences (label-to-data calls)", "sensitivity": "synthetic"}
    assert meta["demos_from"] == (expected if meta["demos"] else {"data": "none", "sensitivity": "public"})
    assert loaded.demos_from.to_dict() == meta["demos_from"]
    assert meta["endpoint"] == {"model": "openai/fake", "api_base": server.api_base}
    assert meta["labeler"] is None  # no compiled labeller in the task for this endpoint: zero-shot round trip


@pytest.fixture
def no_lm(monkeypatch):
    """Fail the test if the session gets as far as building an LM."""
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may be built"))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def test_optimizers_needing_gold_outputs_are_refused(tmp_path: Path, mini_taxonomy_path, task_dir, no_lm, capsys):
    dev_path = tmp_path / "dev.jsonl"
    write_records(dev_path, GOLD_DEV)
    code = compile_cli.main(
        [
            "--task",
            str(task_dir),
            "--program",
            "label-to-data",
            "--optimizer",
            "labeled-fewshot",
            "--skip-before",
            "--dev",
            str(dev_path),
            "--taxonomy",
            str(mini_taxonomy_path),
            "--out",
            str(tmp_path / "x.json"),
        ]
    )
    assert code == 2 and "does not apply to label-to-data" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_a_compiled_labeller_with_gold_demos_keeps_label_to_data_off_a_remote_endpoint(task_dir, no_lm):
    task = load_task(task_dir)
    remote = LMSpec("openai/gpt-4o-mini")
    committed = compiled_path("data_to_label", "local/x")  # gold train demos, recorded as private
    config = CompileConfig(program="label-to-data", optimizer="bootstrap", labeler=committed)
    with pytest.raises(PrivacyError, match="program labeler .*gold train"):
        compile_program(task, config, lm=remote)
    # With a zero-shot round-trip labeller only the guideline and generated text go out: the gate lets it pass
    # (and the session goes on to build the LM).
    with pytest.raises(pytest.fail.Exception, match="no LM may be built"):
        compile_program(task, replace(config, labeler=None), lm=remote)


def test_an_injected_handle_is_checked_for_the_labeller_it_will_carry(task_dir):
    task = load_task(task_dir)
    uncleared = LMHandle(
        lm=DummyLM([{"sentences": ["x y"]}]), adapter=None, endpoint=Endpoint("openai/gpt-4o-mini"), name="remote",
        role="prompt_model", policy=task.privacy,
    )  # fmt: skip
    committed = compiled_path("data_to_label", "local/x")  # gold train demos, recorded as private
    config = CompileConfig(program="label-to-data", optimizer="bootstrap", labeler=committed)
    with pytest.raises(PrivacyError, match="program labeler"):
        compile_program(task, config, handle=uncleared)

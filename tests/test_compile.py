import json
from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from clinsynth.compiled import compiled_path, lm_slug, load_compiled, save_compiled, taxonomy_sha256
from clinsynth.errors import ClinsynthError
from clinsynth.lm import LMHandle
from clinsynth.privacy import Endpoint
from clinsynth.taxonomy import load_taxonomy
from programs import compile as compile_cli
from programs.data_to_label import DataToLabel


def examples(pairs):
    return [dspy.Example(sentence=t, categories=c).with_inputs("sentence") for t, c in pairs]


TRAIN = examples(
    [("He is confused.", ["COGNITIVE_IMPAIRMENT"])] * 3
    + [("MMSE 22/30.", ["COGNITIVE_TESTING"])] * 2
    + [("Wound closed.", [])] * 6
    + [("Started donepezil.", ["TREATMENT"])]
)


def handle(answers: list[dict]) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(DummyLM(answers, adapter=adapter), adapter, Endpoint("openai/dummy", "http://127.0.0.1"), "dummy")


def test_stratified_alternates_categories_with_none_and_keeps_everything():
    taxonomy = load_taxonomy()
    ordered = compile_cli.stratified(TRAIN, taxonomy, seed=0)
    assert sorted(map(id, ordered)) == sorted(map(id, TRAIN))
    firsts = [taxonomy.first_label(e.categories) for e in ordered[:6]]
    assert firsts == ["COGNITIVE_IMPAIRMENT", "NONE", "COGNITIVE_TESTING", "NONE", "TREATMENT", "NONE"]


def test_metric_is_per_sentence_set_f1_and_gepa_feedback_names_the_errors():
    gold = dspy.Example(sentence="x", categories=["COGNITIVE_IMPAIRMENT", "DIAGNOSIS"])
    pred = dspy.Prediction(categories=["COGNITIVE_IMPAIRMENT", "TREATMENT"])
    assert compile_cli.label_f1(gold, pred) == pytest.approx(0.5)
    fb = compile_cli.label_f1_with_feedback(gold, pred)
    assert fb.score == pytest.approx(0.5) and "Missed ['DIAGNOSIS']" in fb.feedback and "TREATMENT" in fb.feedback
    none = dspy.Example(sentence="x", categories=[])
    assert compile_cli.label_f1(none, dspy.Prediction(categories=[])) == 1.0


def test_labeled_fewshot_compiles_saves_with_metadata_and_loads_in_a_fresh_program(tmp_path: Path):
    taxonomy = load_taxonomy()
    compiled = compile_cli.optimize("labeled-fewshot", DataToLabel(taxonomy), TRAIN, TRAIN, handle([]), 4, 0, 1, 1)
    assert len(compiled.label.demos) == 4
    out = compiled_path("data_to_label", "local/qwen", tmp_path)
    assert out.name == "data_to_label.local.json"
    save_compiled(compiled, out, {"taxonomy_sha256": taxonomy_sha256(taxonomy), "clinsynth": {"optimizer": "x"}})
    state = json.loads(out.read_text())
    assert state["metadata"]["dependency_versions"]["dspy"] and state["metadata"]["clinsynth"]["optimizer"] == "x"

    fresh = load_compiled(DataToLabel(taxonomy), out, taxonomy)
    assert [d["sentence"] for d in fresh.label.demos] == [d.sentence for d in compiled.label.demos]
    assert fresh.label.signature.instructions == compiled.label.signature.instructions


def test_a_program_compiled_for_another_guideline_is_refused(tmp_path: Path, mini_taxonomy_path: Path):
    taxonomy = load_taxonomy()
    out = tmp_path / "p.json"
    save_compiled(DataToLabel(taxonomy), out, {"taxonomy_sha256": taxonomy_sha256(taxonomy)})
    mini = load_taxonomy(mini_taxonomy_path)
    with pytest.raises(ClinsynthError, match="another version of the guideline"):
        load_compiled(DataToLabel(mini), out, mini)


def test_knn_program_saves_its_pool_and_shows_the_nearest_demos(tmp_path: Path):
    taxonomy = load_taxonomy()

    def embed(texts):  # 2-d toy embedding: is it about confusion?
        import numpy as np

        return np.array([[1.0, 0.0] if "confus" in t.lower() else [0.0, 1.0] for t in texts])

    program = DataToLabel(taxonomy)
    program.set_demo_pool(TRAIN, k=2, embed=embed)
    assert {d.sentence for d in program._nearest_demos("Confused at night.")} == {"He is confused."}
    out = tmp_path / "knn.json"
    save_compiled(program, out, {})
    fresh = DataToLabel(taxonomy)
    fresh._embed = embed
    load_compiled(fresh, out, taxonomy)
    assert fresh.knn_k == 2 and len(fresh.demo_pool) == len(TRAIN)
    lm = handle([{"categories": ["COGNITIVE_IMPAIRMENT"]}])
    with lm.context():
        assert fresh(sentence="Confused at night.").categories == ["COGNITIVE_IMPAIRMENT"]
    shown = json.dumps(lm.lm.history[-1]["messages"])
    assert "He is confused." in shown and "Wound closed." not in shown


def test_dev_scores_count_failures_as_none():
    taxonomy = load_taxonomy()
    dev = examples([("He is confused.", ["COGNITIVE_IMPAIRMENT"]), ("Wound closed.", [])])
    answers = [{"categories": ["COGNITIVE_IMPAIRMENT"]}, {"categories": ["NOT_A_LABEL"]}] + [
        {"categories": ["NOT_A_LABEL"]}
    ] * 2
    scores = compile_cli.dev_scores(DataToLabel(taxonomy), dev, handle(answers), threads=1, desc="t")
    assert scores["n"] == 2 and scores["failed"] == 1 and scores["mean_set_f1"] == 1.0


def test_lm_slug_is_file_safe():
    assert lm_slug("local/qwen2.5-coder") == "local"
    assert lm_slug("openai/gpt-4o-mini") == "openai_gpt-4o-mini"


def test_the_committed_compiled_program_loads_and_beat_zero_shot_on_dev():
    from clinsynth.compiled import read_metadata

    taxonomy = load_taxonomy()
    path = compiled_path("data_to_label", "local/qwen2.5-coder-1.5b-instruct-q4_k_m")
    program = load_compiled(DataToLabel(taxonomy), path, taxonomy)
    assert len(program.label.demos) >= len(taxonomy.names)
    meta = read_metadata(path)["clinsynth"]
    assert meta["dev_after"]["micro_f1"] > meta["dev_before"]["micro_f1"]


def test_random_search_keeps_a_program_that_labels_the_valset_right():
    taxonomy = load_taxonomy()
    train = TRAIN[:3] + TRAIN[5:7]
    # DummyLM keyed by the sentence: right answers for every train/val sentence.
    answers = {t: {"categories": c} for t, c in [("He is confused.", ["COGNITIVE_IMPAIRMENT"]), ("Wound closed.", [])]}
    lm = handle([])
    lm.lm = DummyLM(answers, adapter=dspy.JSONAdapter())
    compiled = compile_cli.optimize("random-search", DataToLabel(taxonomy), train, train, lm, 2, 0, 1, 1)
    assert isinstance(compiled, DataToLabel) and len(compiled.label.demos) <= 2
    with lm.context():
        assert compiled(sentence="He is confused.").categories == ["COGNITIVE_IMPAIRMENT"]
    candidates = compile_cli.search_candidates(compiled)
    assert {c["seed"] for c in candidates} == {-3, -2, -1, 0}  # zero-shot, labelled, bootstrapped, one shuffled
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    assert next(c["demos"] for c in candidates if c["seed"] == -3) == 0
    assert compile_cli.search_candidates(DataToLabel(taxonomy)) == []

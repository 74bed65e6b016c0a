import json
import math
from pathlib import Path

import dspy
import pytest
from clinsynth.programs.category_decisions import (
    MAX_DEMOS,
    CategoryDecisions,
    best_threshold,
    cross_fitted_scores,
    decisions_example,
    thresholds_for,
)
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.labellers import load_labeller
from clinsynth.programs.steps.compile import CompileConfig, compile_program
from clinsynth.signatures.decide_categories import decision_fields

from clinsynth.data.task import load_task
from clinsynth.errors import ClinsynthError
from clinsynth.llm.compiled import read_metadata, save_compiled, taxonomy_sha256
from tests.conftest import ad_taxonomy, write_task
from tests.test_compile import handle


def answer(*yes: str) -> dict:
    """A DummyLM answer: true for the categories named, false for the rest."""
    return {field: name in yes for name, field in decision_fields(ad_taxonomy()).items()}


def test_forward_labels_the_categories_answered_yes_in_guideline_order():
    program = CategoryDecisions(ad_taxonomy())
    with handle([answer("TREATMENT", "COGNITIVE_IMPAIRMENT")]).context():
        pred = program(sentence="Confused; started donepezil.")
    assert pred.categories == ["COGNITIVE_IMPAIRMENT", "TREATMENT"]
    # No logprobs from this LM: P(yes) is the answer itself.
    assert pred.scores["TREATMENT"] == 1.0 and pred.scores["DIAGNOSIS"] == 0.0


def _logprobs(text: str, values: dict[str, float]) -> dict:
    """Token logprobs for ``text``: one token per JSON value with the given logprob, 0 elsewhere."""
    content, pos = [], 0
    for field, logprob in values.items():
        start = text.index(f'"{field}": ') + len(f'"{field}": ')
        end = start + (4 if text[start] == "t" else 5)
        content += [{"token": text[pos:start], "logprob": 0.0}, {"token": text[start:end], "logprob": logprob}]
        pos = end
    content.append({"token": text[pos:], "logprob": 0.0})
    return {"content": content}


def test_scores_are_the_probability_of_yes_from_the_value_tokens_and_thresholds_decide():
    taxonomy = ad_taxonomy()
    program = CategoryDecisions(taxonomy)
    said = answer("DIAGNOSIS")
    text = json.dumps(said)
    logprobs = {field: math.log(0.9) for field in decision_fields(taxonomy).values()}
    logprobs["d"] = math.log(0.6)  # DIAGNOSIS said true with p 0.6
    logprobs["t"] = math.log(0.7)  # TREATMENT said false with p 0.7 -> P(yes) 0.3
    program.label = lambda **kw: dspy.Prediction(**said, logprobs=_logprobs(text, logprobs))
    scores = program.scores("Probable Alzheimer's disease.")
    assert scores["DIAGNOSIS"] == pytest.approx(0.6) and scores["TREATMENT"] == pytest.approx(0.3)
    assert scores["SAFETY_CONCERNS"] == pytest.approx(0.1)
    assert program(sentence="x").categories == ["DIAGNOSIS"]
    program.thresholds["DIAGNOSIS"], program.thresholds["TREATMENT"] = 0.65, 0.25
    assert program(sentence="x").categories == ["TREATMENT"]


def test_best_threshold_separates_the_classes_and_keeps_the_default_with_few_positives():
    scores = [0.1, 0.2, 0.3, 0.35, 0.6, 0.7]
    assert best_threshold(scores, [False, False, False, True, True, True]) == pytest.approx(0.325)
    assert best_threshold(scores, [False, False, False, False, True, True]) == 0.5  # two positives: default
    assert best_threshold([], []) == 0.5


def test_thresholds_and_the_cross_fitted_estimate_skip_failed_answers():
    taxonomy = ad_taxonomy()
    low = {name: 0.05 for name in taxonomy.names}
    scored = []
    for i in range(12):
        yes = i % 3 == 0
        scored.append(({**low, "COGNITIVE_IMPAIRMENT": 0.4 if yes else 0.2}, ["COGNITIVE_IMPAIRMENT"] if yes else []))
    scored.append((None, ["DIAGNOSIS"]))  # a failed answer: out of the fit, NONE in the estimate
    fitted = thresholds_for(taxonomy, scored)
    assert 0.2 < fitted["COGNITIVE_IMPAIRMENT"] < 0.4 and fitted["DIAGNOSIS"] == 0.5
    estimate = cross_fitted_scores(taxonomy, scored)
    # Folds by position: each half has 2 positives, below MIN_POSITIVES, so the other half's
    # threshold is the default 0.5 and nothing is labelled: the estimate is honest, not 1.0.
    assert estimate["folds"] == 2 and estimate["micro_f1"] == 0.0


def test_demos_show_label_lists_as_decisions():
    taxonomy = ad_taxonomy()
    example = decisions_example("MMSE 24/30.", ["COGNITIVE_TESTING"], taxonomy)
    assert example.ct is True and example.d is False
    assert set(example.inputs().keys()) == {"sentence"}


def test_compile_fits_thresholds_on_dev_and_the_file_loads_as_a_decisions_labeller(tmp_path: Path):
    task = load_task(write_task(tmp_path / "task"))
    dev = task.gold()["dev"][:4]
    answers = [answer(*r.labels) for r in dev] * 2  # calibration, then the "after" score
    config = CompileConfig(optimizer="decisions", dev_limit=4, skip_before=True, out=tmp_path / "d.json")
    result = compile_program(task, config, handle=handle(answers))
    meta = read_metadata(result.out)["clinsynth"]
    # Demos: the first stratified gold train examples (private), at most MAX_DEMOS, shown as decisions.
    assert meta["optimizer"] == "decisions" and meta["demos_from"]["sensitivity"] == "private"
    assert meta["dev_after"]["mean_set_f1"] == 1.0 and meta["dev_after"]["failed"] == 0
    assert set(meta["dev_cross_fitted"]) >= {"micro_f1", "macro_f1", "binary_f1", "folds"}
    loaded = load_labeller(task.taxonomy, result.out)
    assert isinstance(loaded, CategoryDecisions) and loaded.thresholds == result.compiled.thresholds
    assert len(loaded.label.demos) == MAX_DEMOS and all(isinstance(d["ct"], bool) for d in loaded.label.demos)
    with pytest.raises(ClinsynthError, match="takes no --samples"):
        load_labeller(task.taxonomy, result.out, samples=3)
    state = json.loads(result.out.read_text())
    assert set(state["decisions"]["thresholds"]) == set(task.taxonomy.names)


def test_a_label_list_file_loads_as_data_to_label(tmp_path: Path):
    taxonomy = ad_taxonomy()
    out = tmp_path / "l.json"
    save_compiled(DataToLabel(taxonomy), out, {"taxonomy_sha256": taxonomy_sha256(taxonomy)})
    loaded = load_labeller(taxonomy, out)
    assert type(loaded) is DataToLabel
    assert type(load_labeller(taxonomy, None)) is DataToLabel


def test_variants_beside_the_default_compiled_file_are_found_by_name(tmp_path: Path):
    from clinsynth.data.task import LMSpec
    from clinsynth.llm.compiled import compiled_variants

    task = load_task(write_task(tmp_path / "task"))
    folder = task.compiled_dir
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"taxonomy_sha256": taxonomy_sha256(task.taxonomy)}
    save_compiled(DataToLabel(task.taxonomy), folder / "data_to_label.local.json", meta)
    save_compiled(CategoryDecisions(task.taxonomy), folder / "data_to_label.decisions.local.json", meta)
    save_compiled(DataToLabel(task.taxonomy), folder / "data_to_label.decisions.openai_gpt-4o.json", meta)
    save_compiled(DataToLabel(task.taxonomy), folder / "label_to_data.other.local.json", meta)
    found = compiled_variants(task, "data_to_label", LMSpec(model="local"))
    assert found == {"decisions": folder / "data_to_label.decisions.local.json"}
    assert isinstance(load_labeller(task.taxonomy, found["decisions"]), CategoryDecisions)

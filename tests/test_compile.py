import json
from dataclasses import replace
from pathlib import Path

import dspy
import pytest
from clinsynth.programs import compile as compile_cli
from clinsynth.programs.compile_labeler import label_f1, label_f1_with_feedback, labeler_problem, stratified
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.optimizers import OPTIMIZERS, Problem, get_optimizer, search_candidates
from clinsynth.programs.scoring import score_labeller
from clinsynth.programs.steps.compile import CompileConfig, compile_program
from dspy.utils import DummyLM

from clinsynth.data.privacy import Endpoint, Sensitivity
from clinsynth.data.task import LMSpec, load_task
from clinsynth.errors import ClinsynthError, PrivacyError
from clinsynth.llm.compiled import (
    compiled_path,
    default_compiled,
    lm_slug,
    load_compiled,
    read_metadata,
    save_compiled,
    taxonomy_sha256,
)
from clinsynth.llm.lm import LMHandle
from clinsynth.llm.session import program_demo_source
from tests.conftest import ad_taxonomy, write_task


def optimize(name: str, problem: Problem):
    """Compile as the compile step does: the registry entry for the problem's program, run on it."""
    return get_optimizer(name, problem.program).run(problem)


def examples(pairs):
    return [dspy.Example(sentence=t, categories=c).with_inputs("sentence") for t, c in pairs]


TRAIN = examples(
    [("He is confused.", ["COGNITIVE_IMPAIRMENT"])] * 3
    + [("MMSE 22/30.", ["COGNITIVE_TESTING"])] * 2
    + [("Wound closed.", [])] * 6
    + [("Started donepezil.", ["TREATMENT"])]
)


def handle(answers: list[dict] | dict, endpoint: Endpoint | None = None) -> LMHandle:
    adapter = dspy.JSONAdapter()
    return LMHandle(
        DummyLM(answers, adapter=adapter), adapter, endpoint or Endpoint("openai/dummy", "http://127.0.0.1"), "dummy"
    )


def problem(h: LMHandle, train=TRAIN, k: int = 4, trials: int = 1):
    return labeler_problem(DataToLabel(ad_taxonomy()), train, train, h, k=k, seed=0, threads=1, trials=trials)


@pytest.fixture
def no_lm(monkeypatch):
    """Fail the test if the session gets as far as building an LM."""
    monkeypatch.setattr("clinsynth.llm.session.make_lm", lambda *a, **k: pytest.fail("no LM may be built"))
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def test_stratified_alternates_categories_with_none_and_keeps_everything():
    taxonomy = ad_taxonomy()
    ordered = stratified(TRAIN, taxonomy, seed=0)
    assert sorted(map(id, ordered)) == sorted(map(id, TRAIN))
    firsts = [taxonomy.first_label(e.categories) for e in ordered[:6]]
    assert firsts == ["COGNITIVE_IMPAIRMENT", "NONE", "COGNITIVE_TESTING", "NONE", "TREATMENT", "NONE"]


def test_metric_is_per_sentence_set_f1_and_gepa_feedback_names_the_errors():
    gold = dspy.Example(sentence="x", categories=["COGNITIVE_IMPAIRMENT", "DIAGNOSIS"])
    pred = dspy.Prediction(categories=["COGNITIVE_IMPAIRMENT", "TREATMENT"])
    assert label_f1(gold, pred) == pytest.approx(0.5)
    fb = label_f1_with_feedback(gold, pred)
    assert fb.score == pytest.approx(0.5) and "Missed ['DIAGNOSIS']" in fb.feedback and "TREATMENT" in fb.feedback
    none = dspy.Example(sentence="x", categories=[])
    assert label_f1(none, dspy.Prediction(categories=[])) == 1.0


def test_labeled_fewshot_compiles_saves_with_metadata_and_loads_in_a_fresh_program(tmp_path: Path):
    taxonomy = ad_taxonomy()
    compiled = optimize("labeled-fewshot", problem(handle([])))
    assert len(compiled.label.demos) == 4
    out = compiled_path("data_to_label", "local/qwen", tmp_path)
    assert out.name == "data_to_label.local.json"
    save_compiled(compiled, out, {"taxonomy_sha256": taxonomy_sha256(taxonomy), "clinsynth": {"optimizer": "x"}})
    state = json.loads(out.read_text())
    assert state["metadata"]["dependency_versions"]["dspy"] and state["metadata"]["clinsynth"]["optimizer"] == "x"

    fresh = load_compiled(DataToLabel(taxonomy), out, taxonomy)
    assert [d["sentence"] for d in fresh.label.demos] == [d.sentence for d in compiled.label.demos]
    assert fresh.label.signature.instructions == compiled.label.signature.instructions
    # No demos_from record: the demos are of unknown origin, which the privacy session treats as private.
    assert not hasattr(fresh, "demos_from")
    assert program_demo_source(fresh).sensitivity is Sensitivity.PRIVATE


def test_a_program_compiled_for_another_guideline_is_refused(tmp_path: Path, mini_taxonomy_path: Path):
    from clinsynth.data.taxonomy import load_taxonomy

    taxonomy = ad_taxonomy()
    out = tmp_path / "p.json"
    save_compiled(DataToLabel(taxonomy), out, {"taxonomy_sha256": taxonomy_sha256(taxonomy)})
    mini = load_taxonomy(mini_taxonomy_path)
    with pytest.raises(ClinsynthError, match="another version of the guideline"):
        load_compiled(DataToLabel(mini), out, mini)


def test_knn_program_saves_its_pool_and_shows_the_nearest_demos(tmp_path: Path):
    taxonomy = ad_taxonomy()

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


def test_the_knn_optimizer_keeps_every_train_sentence_in_file_order():
    compiled = optimize("knn", problem(handle([]), k=3))
    assert compiled.knn_k == 3 and [e.sentence for e in compiled.demo_pool] == [e.sentence for e in TRAIN]


def test_fewshot_knn_shows_the_fixed_demos_first_then_the_nearest(monkeypatch):
    compiled = optimize("fewshot-knn", problem(handle([]), k=2))
    fixed = [d.sentence for d in compiled.label.demos]
    assert len(fixed) == 2 and compiled.knn_k == 4 and len(compiled.demo_pool) == len(TRAIN)

    def embed(texts):  # 2-d toy embedding: is it about donepezil?
        import numpy as np

        return np.array([[1.0, 0.0] if "donepezil" in t.lower() else [0.0, 1.0] for t in texts])

    compiled._embed, compiled._pool_vectors = embed, None
    lm = handle([{"categories": ["TREATMENT"]}])
    with lm.context():
        assert compiled(sentence="Continue donepezil.").categories == ["TREATMENT"]
    shown = [m["content"] for m in lm.lm.history[-1]["messages"] if m["role"] == "user"]
    # Fixed demos lead (the cached prefix); the nearest one sits last, next to the question.
    assert [any(f in m for m in shown[: len(fixed)]) for f in fixed] == [True, True]
    assert "Started donepezil." in shown[-2] and "Continue donepezil." in shown[-1]


def test_scoring_counts_failures_as_none():
    taxonomy = ad_taxonomy()
    dev = examples([("He is confused.", ["COGNITIVE_IMPAIRMENT"]), ("Wound closed.", [])])
    answers = [{"categories": ["COGNITIVE_IMPAIRMENT"]}, {"categories": ["NOT_A_LABEL"]}] + [
        {"categories": ["NOT_A_LABEL"]}
    ] * 2
    run = score_labeller(DataToLabel(taxonomy), dev, handle(answers), threads=1, desc="t", show_progress=False)
    scores = run.summary()
    assert scores["n"] == 2 and scores["failed"] == 1 and scores["mean_set_f1"] == 1.0
    assert set(scores) == {"n", "mean_set_f1", "micro_f1", "macro_f1", "binary_f1", "failed", "seconds_per_sentence"}
    assert run.predicted == [["COGNITIVE_IMPAIRMENT"], None]


def test_lm_slug_is_file_safe():
    assert lm_slug("local/qwen2.5-coder") == "local"
    assert lm_slug("openai/gpt-4o-mini") == "openai_gpt-4o-mini"


def test_compiled_path_tells_endpoints_apart_unless_embedded_or_provider_default(tmp_path: Path):
    plain = compiled_path("data_to_label", "openai/gpt-4o-mini", tmp_path)
    served = compiled_path("data_to_label", "openai/gpt-4o-mini", tmp_path, api_base="http://127.0.0.1:8000/v1")
    assert plain.name == "data_to_label.openai_gpt-4o-mini.json"
    assert served.name == "data_to_label.openai_gpt-4o-mini@127.0.0.1_8000.json" and served != plain
    remote = compiled_path("data_to_label", "openai/gpt-4o-mini", tmp_path, api_base="https://llm.example.org/v1")
    assert remote.name == "data_to_label.openai_gpt-4o-mini@llm.example.org_443.json"
    # The embedded model's port changes every start; a provider's default endpoint needs no key.
    assert compiled_path("p", "local/qwen", tmp_path, api_base="http://127.0.0.1:5555/v1").name == "p.local.json"
    assert compiled_path("p", "ollama_chat/llama3.1", tmp_path, api_base="http://localhost:11434/").name == (
        "p.ollama_chat_llama3.1.json"
    )


def test_default_compiled_refuses_a_program_made_for_another_endpoint(tmp_path: Path, no_lm):
    task = load_task(write_task(tmp_path / "task"))
    taxonomy = task.taxonomy
    spec = LMSpec("openai/served", "http://127.0.0.1:8000/v1")
    assert default_compiled(task, "data_to_label", spec) is None  # nothing compiled yet
    path = compiled_path("data_to_label", "openai/served", task.compiled_dir, api_base=spec.api_base)

    def save(endpoint: dict | None) -> None:
        meta = {"clinsynth": {"endpoint": endpoint} if endpoint else {}, "taxonomy_sha256": taxonomy_sha256(taxonomy)}
        save_compiled(DataToLabel(taxonomy), path, meta)

    save({"model": "openai/served", "api_base": "http://127.0.0.1:8000/v1/"})
    assert default_compiled(task, "data_to_label", spec) == path
    save({"model": "openai/served", "api_base": "http://127.0.0.1:8000/v2"})  # same host and port, another server
    assert default_compiled(task, "data_to_label", spec) is None
    save(None)  # compiled before endpoints were recorded: used as before
    assert default_compiled(task, "data_to_label", spec) == path

    # The embedded model: a 'local' file made against a server is not the embedded model's.
    local = compiled_path("data_to_label", "local/x", task.compiled_dir)
    save_compiled(DataToLabel(taxonomy), local, {"clinsynth": {"endpoint": {"model": "openai/x", "api_base": "local"}}})
    assert default_compiled(task, "data_to_label", LMSpec()) is None
    local_meta = json.loads(local.read_text())
    local_meta["metadata"]["clinsynth"]["endpoint"]["model"] = "openai/qwen2.5-coder-1.5b-instruct-q4_k_m"
    local.write_text(json.dumps(local_meta))
    assert default_compiled(task, "data_to_label", LMSpec()) == local


def test_the_committed_compiled_program_loads_and_beat_zero_shot_on_dev():
    taxonomy = ad_taxonomy()
    path = compiled_path("data_to_label", "local/qwen2.5-coder-1.5b-instruct-q4_k_m")
    program = load_compiled(DataToLabel(taxonomy), path, taxonomy)
    assert len(program.label.demos) >= len(taxonomy.names)
    meta = read_metadata(path)["clinsynth"]
    assert meta["dev_after"]["micro_f1"] > meta["dev_before"]["micro_f1"]
    # Its demos are gold train sentences: recorded, and private to the privacy session.
    assert meta["demos_from"] == {"data": "gold train (tasks/ad_signs/gold/train.jsonl)", "sensitivity": "private"}
    assert meta["endpoint"]["api_base"] == "local"
    assert program_demo_source(program).sensitivity is Sensitivity.PRIVATE
    assert program.demos_from.data == "gold train (tasks/ad_signs/gold/train.jsonl)"
    from tests.conftest import ad_task

    assert default_compiled(ad_task(), "data_to_label", LMSpec()) == path


def test_the_committed_generator_records_no_demos_and_a_relative_labeller():
    meta = read_metadata(compiled_path("label_to_data", "local/x"))["clinsynth"]
    assert meta["demos_from"] == {"data": "none", "sensitivity": "public"} and meta["demos"] == 0
    assert meta["labeler"] == "tasks/ad_signs/compiled/data_to_label.local.json"


def test_a_malformed_demos_from_record_is_an_error(tmp_path: Path):
    taxonomy = ad_taxonomy()
    out = tmp_path / "p.json"
    save_compiled(DataToLabel(taxonomy), out, {"clinsynth": {"demos_from": {"data": "x", "sensitivity": "secret"}}})
    with pytest.raises(ClinsynthError, match="demos_from"):
        load_compiled(DataToLabel(taxonomy), out, taxonomy)


def test_random_search_keeps_a_program_that_labels_the_valset_right():
    taxonomy = ad_taxonomy()
    train = TRAIN[:3] + TRAIN[5:7]
    # DummyLM keyed by the sentence: right answers for every train/val sentence.
    answers = {t: {"categories": c} for t, c in [("He is confused.", ["COGNITIVE_IMPAIRMENT"]), ("Wound closed.", [])]}
    lm = handle(answers)
    compiled = optimize("random-search", problem(lm, train=train, k=2))
    assert isinstance(compiled, DataToLabel) and len(compiled.label.demos) <= 2
    with lm.context():
        assert compiled(sentence="He is confused.").categories == ["COGNITIVE_IMPAIRMENT"]
    candidates = search_candidates(compiled)
    assert {c["seed"] for c in candidates} == {-3, -2, -1, 0}  # zero-shot, labelled, bootstrapped, one shuffled
    assert [c["score"] for c in candidates] == sorted((c["score"] for c in candidates), reverse=True)
    assert next(c["demos"] for c in candidates if c["seed"] == -3) == 0
    assert search_candidates(DataToLabel(taxonomy)) == []


def test_the_registry_says_which_optimizers_apply_to_which_program():
    assert set(OPTIMIZERS) == {
        "labeled-fewshot",
        "knn",
        "bootstrap",
        "random-search",
        "mipro",
        "gepa",
        "decisions",
        "fewshot-knn",
    }
    with pytest.raises(ClinsynthError, match="label-to-data writes sentences"):
        get_optimizer("decisions", "label-to-data")
    assert get_optimizer("knn", "data-to-label").name == "knn"
    with pytest.raises(ClinsynthError, match="does not apply to label-to-data"):
        get_optimizer("labeled-fewshot", "label-to-data")
    with pytest.raises(ClinsynthError, match="unknown optimizer 'nope'; choose from labeled-fewshot"):
        get_optimizer("nope", "data-to-label")


def test_compile_step_writes_demos_from_and_endpoint_and_the_cli_prints_the_table(tmp_path: Path, capsys):
    task = load_task(write_task(tmp_path / "task"))
    h = handle([{"categories": []}] * 8)
    result = compile_program(task, CompileConfig(k=4, dev_limit=2), handle=h)
    # Keyed by model and endpoint, in the task's compiled folder.
    assert result.out == task.compiled_dir / "data_to_label.dummy@127.0.0.1_80.json"
    meta = read_metadata(result.out)["clinsynth"]
    assert meta["demos_from"] == {"data": "gold train (tasks/ad_signs/gold/train.jsonl)", "sensitivity": "private"}
    assert meta["endpoint"] == {"model": "openai/dummy", "api_base": "http://127.0.0.1"}
    assert meta["train"] == {"path": "tasks/ad_signs/gold/train.jsonl", "n": 670} and meta["dev"]["n"] == 2
    assert meta["dev_before"]["n"] == 2 and meta["dev_after"]["failed"] == 0 and meta["k"] == 4
    for key in ("program", "optimizer", "lm", "seed", "trials", "candidates", "compile_seconds", "created_at"):
        assert key in meta
    loaded = load_compiled(DataToLabel(task.taxonomy), result.out, task.taxonomy)
    assert loaded.demos_from.sensitivity is Sensitivity.PRIVATE and len(loaded.label.demos) == 4
    assert [row[0] for row in result.rows] == ["before (zero-shot)", "after (labeled-fewshot)"]

    out = tmp_path / "cli.json"
    args = compile_cli.build_parser().parse_args(
        ["--task", str(task.root), "--k", "2", "--dev-limit", "1", "--skip-before", "--out", str(out)]
    )
    assert compile_cli.run(args, handle=handle([{"categories": []}] * 2)) == 0
    printed = capsys.readouterr().out
    assert "| after (labeled-fewshot)" in printed and "before" not in printed and f"wrote {out}" in printed
    assert read_metadata(out)["clinsynth"]["k"] == 2


def test_a_compile_with_no_demos_records_none(tmp_path: Path):
    task = load_task(write_task(tmp_path / "task"))
    h = handle([{"categories": []}] * 4)
    result = compile_program(task, CompileConfig(k=0, dev_limit=1, skip_before=True), handle=h)
    assert result.metadata["clinsynth"]["demos_from"] == {"data": "none", "sensitivity": "public"}


def test_a_remote_unapproved_prompt_model_is_refused_before_any_lm_is_built(tmp_path: Path, no_lm, capsys):
    task = load_task(write_task(tmp_path / "task"))
    remote = replace(task, lms={**task.lms, "prompt_model": LMSpec("openai/gpt-4o-mini")})
    with pytest.raises(PrivacyError, match=r"\(role prompt_model\): gold train\+dev \(tasks/ad_signs/gold/train.jsonl"):
        compile_program(remote, CompileConfig(dev_limit=2))
    assert not task.compiled_dir.exists() or not any(task.compiled_dir.iterdir())
    # The same through the CLI: an error on stderr and exit status 2.
    code = compile_cli.main(["--task", str(task.root), "--lm", "openai/gpt-4o-mini", "--dev-limit", "2"])
    assert code == 2 and "error: refusing to send private data" in capsys.readouterr().err
    # Approved endpoints pass the gate (and get as far as building the LM).
    approved = load_task(write_task(tmp_path / "approved", approved=("openai/gpt-4o-mini",)))
    approved = replace(approved, lms={"prompt_model": LMSpec("openai/gpt-4o-mini")})
    with pytest.raises(pytest.fail.Exception, match="no LM may be built"):
        compile_program(approved, CompileConfig(dev_limit=2))


def test_help_shows_the_callers_name_and_the_defaults():
    text = compile_cli.build_parser(prog="clinsynth compile").format_help()
    assert text.startswith("usage: clinsynth compile") and "(default: labeled-fewshot)" in text
    assert "--task" in text and "(default: None)" not in text
    for action in compile_cli.build_parser()._actions:
        assert action.help, action.dest

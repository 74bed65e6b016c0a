"""The Label Studio review workflow: export -> (edited) export JSON -> import, and bronze accept/reject."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from clinsynth.app.review import config_path, export_review, import_review, margins
from clinsynth.data.gold import load_gold
from clinsynth.data.mixes import MixSources, load_part, rejected_path
from clinsynth.data.records import Provenance, Record, read_records, write_records
from clinsynth.data.task import load_task
from clinsynth.errors import ClinsynthError, DataError
from clinsynth.model.train import mix_files
from tests.conftest import TWO_CATEGORY_YAML, write_task
from tests.mini_data import write_gold

SENTENCES = [  # (id, note, text) of a user's file: note ids not in the mini gold
    ("s1", "new-1", "Febrile to 39 C overnight."),
    ("s2", "new-1", "Dry cough since Tuesday."),
    ("s3", "new-2", "Abdomen soft."),
    ("s4", "new-2", "Coughing and febrile."),
    ("s5", "new-3", "Follow up in a week."),
    ("s6", "new-3", "Temperature 38.5 C with chills."),
]


@pytest.fixture
def task(tmp_path: Path):
    tax = tmp_path / "mini.yaml"
    tax.write_text(TWO_CATEGORY_YAML)
    gold = write_gold(tmp_path / "gold")
    return load_task(write_task(tmp_path / "task", taxonomy=tax, gold=gold))


@pytest.fixture
def sentences(tmp_path: Path) -> Path:
    path = tmp_path / "sentences.jsonl"
    path.write_text("".join(json.dumps({"id": i, "note_id": n, "text": t}) + "\n" for i, n, t in SENTENCES))
    return path


def gold_bytes(task) -> dict[str, bytes]:
    return {s: task.split_path(s).read_bytes() for s in ("train", "dev", "test")}


def annotate(tasks: list[dict], labels: dict[str, list[list[str]]], **extra) -> list[dict]:
    """What Label Studio exports after annotators ticked ``labels[sentence id]`` (one list per annotator)."""
    out = []
    for n, t in enumerate(tasks, 1):
        anns = [
            {
                "id": 100 * n + k,
                "completed_by": {"id": k + 1, "email": f"a{k + 1}@example.org"} if k else k + 1,
                "was_cancelled": False,
                "result": [{"from_name": "labels", "to_name": "text", "type": "choices", "value": {"choices": ls}}]
                if ls
                else [],
            }
            for k, ls in enumerate(labels.get(t["data"]["id"], []))
        ]
        out.append({"id": n, "data": t["data"], "annotations": anns, "predictions": t["predictions"], **extra})
    return out


def exported(task, sentences: Path, tmp_path: Path) -> list[dict]:
    out = tmp_path / "review" / "tasks.json"
    export_review(task, str(sentences), n=len(SENTENCES), strategy="random", out=out)
    return json.loads(out.read_text())


def write_export(tmp_path: Path, tasks: list[dict]) -> Path:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_random_export_writes_label_studio_tasks_and_config(task, sentences: Path, tmp_path: Path) -> None:
    out = tmp_path / "tasks.json"
    result = export_review(task, str(sentences), n=4, strategy="random", seed=3, out=out)
    tasks = json.loads(out.read_text())
    assert result.exported == len(tasks) == 4 and result.random == 4 and result.uncertain == 0
    by_id = {i: (n, t) for i, n, t in SENTENCES}
    for t in tasks:
        data = t["data"]
        assert (data["note_id"], data["text"]) == by_id[data["id"]]
        assert data["source"] == "sentences.jsonl" and t["predictions"] == []  # no model: nothing pre-annotated
    assert len({t["data"]["id"] for t in tasks}) == 4
    # Same seed, same picks; another seed, (here) other picks.
    export_review(task, str(sentences), n=4, strategy="random", seed=3, out=tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == tasks
    root = ET.fromstring(config_path(out).read_text())
    choices = root.find("Choices")
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("labels", "text", "multiple")
    assert [c.get("value") for c in choices] == ["FEVER", "COUGH"]
    assert root.find("Text").get("value") == "$text"
    assert "select none for NONE" in root.find("Header").get("value")
    assert [c.get("name") for c in root.iter("Choices")] == ["labels"]  # no verdict block outside bronze


def test_uncertain_without_a_model_says_how_to_get_one(task, sentences: Path, tmp_path: Path) -> None:
    with pytest.raises(ClinsynthError, match=r"clinsynth train.*--strategy random"):
        export_review(task, str(sentences), n=3, out=tmp_path / "tasks.json")
    assert not (tmp_path / "tasks.json").exists()


def test_uncertain_export_picks_sentences_nearest_the_thresholds(
    task, sentences: Path, tmp_path: Path, mini_trained
) -> None:
    _, _, classifier = mini_trained
    classifier.save(task.model_dir)
    out = tmp_path / "tasks.json"
    result = export_review(task, str(sentences), n=5, strategy="uncertain", random_share=0.2, out=out)
    tasks = json.loads(out.read_text())
    assert (result.uncertain, result.random) == (4, 1)
    texts = [t for _, _, t in SENTENCES]
    cuts = [classifier.info.thresholds[n] for n in classifier.info.labels]
    margin = dict(zip(texts, margins(classifier.scores(texts), cuts), strict=True))
    uncertain = [t["data"]["text"] for t in tasks if t["data"]["selected_by"] == "uncertain"]
    left_out = set(texts) - {t["data"]["text"] for t in tasks}
    assert max(margin[t] for t in uncertain) <= min(margin[t] for t in left_out)
    predicted = dict(zip(texts, classifier.predict(texts), strict=True))
    for t in tasks:
        (pred,) = t["predictions"]
        ticked = [c for r in pred["result"] for c in r["value"]["choices"]]
        assert ticked == predicted[t["data"]["text"]]
        assert pred["score"] == pytest.approx(margin[t["data"]["text"]], abs=1e-3)
        assert set(t["data"]["scores"]) == {"FEVER", "COUGH"}


def test_round_trip_appends_gold_with_annotators(task, sentences: Path, tmp_path: Path) -> None:
    tasks = exported(task, sentences, tmp_path)
    before = read_records(task.split_path("train"))
    edited = annotate(tasks, {"s1": [["FEVER"]], "s2": [["COUGH"]], "s4": [["COUGH", "FEVER"]], "s3": [[]]})
    edited[0]["annotations"].insert(0, {"completed_by": 9, "was_cancelled": True, "result": []})
    result = import_review(task, write_export(tmp_path, edited), "train")
    assert (result.written, result.replaced, result.cancelled, result.unannotated) == (4, 0, 1, 2)
    train = load_gold(task.gold_dir, task.taxonomy)["train"]  # the whole gold still validates
    assert [r.id for r in train[: len(before)]] == [r.id for r in before]
    new = {r.id: r for r in train[len(before) :]}
    assert {k: r.labels for k, r in new.items()} == {
        "s1": ["FEVER"],
        "s2": ["COUGH"],
        "s3": [],
        "s4": ["FEVER", "COUGH"],
    }
    assert new["s1"].note_id == "new-1" and new["s1"].split == "train" and new["s1"].source == "gold"
    assert new["s1"].provenance.attributes["annotators"] == ["1"]
    assert new["s1"].provenance.lm == "human" and new["s1"].provenance.attributes["annotator_kind"] == "human"
    assert result.kappa == {} and result.double_annotated == 0
    # Importing a corrected export again replaces, never duplicates; a model's annotations say so.
    again = annotate(tasks, {"s1": [["COUGH"]]})
    with pytest.raises(ClinsynthError, match="annotator-model"):
        import_review(task, write_export(tmp_path, again), "train", annotator_kind="model")
    result = import_review(task, write_export(tmp_path, again), "train", annotator_kind="model",
                           annotator_model="qwen2.5-1.5b")  # fmt: skip
    assert (result.written, result.replaced) == (0, 1)
    train = read_records(task.split_path("train"))
    assert [r.labels for r in train if r.id == "s1"] == [["COUGH"]]
    (s1,) = [r for r in train if r.id == "s1"]
    assert s1.provenance.lm == "model: qwen2.5-1.5b" and s1.provenance.attributes["annotator_kind"] == "model"


def test_the_bundled_gold_says_models_annotated_it() -> None:
    from clinsynth.data.task import load_task

    for folder in ("tasks/ad_signs", "tasks/sdoh"):
        gold = load_task(folder).gold()
        kinds = {r.provenance.attributes["annotator_kind"] for split in gold.values() for r in split}
        assert kinds == {"model"}, folder


@pytest.mark.parametrize(
    ("edit", "message", "field"),
    [
        (
            lambda t: t[1]["annotations"][0]["result"][0]["value"].update(choices=["FEVR"]),
            r"task 2: unknown label",
            "annotations[0].result[0].value.choices",
        ),  # noqa: E501
        (lambda t: t[2]["data"].pop("text"), r"task 3: missing", "data.text"),
        (
            lambda t: t[0]["annotations"][0].pop("completed_by"),
            r"task 1: missing annotator",
            "annotations[0].completed_by",
        ),  # noqa: E501
        (lambda t: t[3]["data"].pop("note_id"), r"task 4: missing \(gold is split by note\)", "data.note_id"),
    ],
    ids=["bad-label", "missing-text", "missing-annotator", "missing-note"],
)
def test_invalid_export_names_file_task_and_field_and_writes_nothing(
    task, sentences: Path, tmp_path: Path, edit, message: str, field: str
) -> None:
    tasks = annotate(exported(task, sentences, tmp_path), {i: [["FEVER"]] for i, _, _ in SENTENCES})
    edit(tasks)  # the first tasks are valid: an error must not leave them half written
    path = write_export(tmp_path, tasks)
    before = gold_bytes(task)
    with pytest.raises(DataError, match=message) as info:
        import_review(task, path, "train")
    assert info.value.path == path and info.value.field == field
    assert str(path) in str(info.value) and f"field '{field}'" in str(info.value)
    assert gold_bytes(task) == before


def test_note_crossing_splits_is_refused(task, sentences: Path, tmp_path: Path) -> None:
    train_note = read_records(task.split_path("train"))[0].note_id
    tasks = annotate(exported(task, sentences, tmp_path), {i: [["FEVER"]] for i, _, _ in SENTENCES})
    tasks[-1]["data"]["note_id"] = train_note
    before = gold_bytes(task)
    with pytest.raises(DataError, match=rf"note '{train_note}' .* gold train split .* also be in dev"):
        import_review(task, write_export(tmp_path, tasks), "dev")
    assert gold_bytes(task) == before
    # Into its own split it is fine.
    assert import_review(task, write_export(tmp_path, tasks), "train").written == len(SENTENCES)


def test_two_annotators_kappa_first_annotator_wins_unless_adjudicated(task, sentences: Path, tmp_path: Path) -> None:
    tasks = exported(task, sentences, tmp_path)
    labels = {
        "s1": [["FEVER"], ["FEVER"]],
        "s2": [["FEVER"], []],
        "s3": [["COUGH"], ["COUGH"]],
        "s4": [["COUGH"], ["COUGH"]],
        "s5": [["FEVER"], []],  # disagreement, not adjudicated: the first annotator's labels
        "s6": [["COUGH"]],  # one annotator: not in the kappa
    }
    edited = annotate(tasks, labels)
    s2 = next(t for t in edited if t["data"]["id"] == "s2")
    s2["annotations"].append(
        {
            "completed_by": 7,
            "ground_truth": True,
            "result": [{"from_name": "labels", "type": "choices", "value": {"choices": ["NONE"]}}],
        }  # noqa: E501
    )
    result = import_review(task, write_export(tmp_path, edited), "test")
    assert result.double_annotated == 5
    # FEVER: A 11001, B 10000 -> po 3/5, pe 11/25 -> 4/14; COUGH: identical -> 1; NONE: A never -> 0.
    assert result.kappa == {"FEVER": round(4 / 14, 4), "COUGH": 1.0, "NONE": 0.0}
    gold = {r.id: r for r in read_records(task.split_path("test"))}
    assert gold["s1"].labels == ["FEVER"] and gold["s5"].labels == ["FEVER"] and gold["s6"].labels == ["COUGH"]
    assert gold["s2"].labels == [] and gold["s2"].provenance.attributes["adjudicated"] is True
    assert gold["s2"].provenance.attributes["annotators"] == ["1", "2", "7"]


def bronze_records() -> list[Record]:
    prov = Provenance(lm="local", program="LabelToData", program_sha256="x", confidence=0.9)
    texts = [
        ("b1", "Febrile at 39.", ["FEVER"]),
        ("b2", "Coughs at night.", ["COUGH"]),
        ("b3", "Fever fever.", ["FEVER"]),
    ]
    return [Record(i, t, ls, "bronze", provenance=prov) for i, t, ls in texts]


def test_bronze_review_rejects_leave_the_mix(task, tmp_path: Path) -> None:
    write_records(task.bronze, bronze_records())
    out = tmp_path / "bronze-tasks.json"
    export_review(task, "bronze", n=3, strategy="random", out=out)
    tasks = json.loads(out.read_text())
    for t in tasks:  # pre-annotated with the LLM's labels as given
        (pred,) = t["predictions"]
        assert pred["result"][0]["value"]["choices"] == {r.id: r.labels for r in bronze_records()}[t["data"]["id"]]
        assert pred["score"] == 0.9 and t["data"]["source"] == "bronze"
    verdicts = [c for c in ET.fromstring(config_path(out).read_text()).iter("Choices") if c.get("name") == "verdict"]
    assert len(verdicts) == 1 and verdicts[0].get("required") == "true"  # Label Studio refuses to submit without
    edited = annotate(tasks, {t["data"]["id"]: [t["predictions"][0]["result"][0]["value"]["choices"]] for t in tasks})
    for t in edited:
        verdict = "REJECT" if t["data"]["id"] == "b3" else "ACCEPT"
        t["annotations"][0]["result"].append(
            {"from_name": "verdict", "to_name": "text", "type": "choices", "value": {"choices": [verdict]}}
        )
    before = gold_bytes(task)
    result = import_review(task, write_export(tmp_path, edited), None)
    assert (result.accepted, result.rejected, result.out) == (2, 1, None)
    assert gold_bytes(task) == before  # generated sentences never become gold
    assert [json.loads(line)["id"] for line in rejected_path(task.bronze).read_text().splitlines()] == ["b3"]
    sources = MixSources.for_task(task)
    assert [r.id for r in load_part("bronze", task.taxonomy, sources)] == ["b1", "b2"]
    # The verdicts decide what trains, so a model's data fingerprint names them with the bronze file.
    assert rejected_path(task.bronze) in mix_files(sources, "gold+bronze")
    assert rejected_path(task.bronze) not in mix_files(sources, "gold+silver")
    # A later review that accepts it puts it back.
    for t in edited:
        t["annotations"][0]["result"][-1]["value"]["choices"] = ["ACCEPT"]
    import_review(task, write_export(tmp_path, edited), None)
    assert [r.id for r in load_part("bronze", task.taxonomy, sources)] == ["b1", "b2", "b3"]


def test_corpus_export_leaves_gold_notes_out(task, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.csv"
    rows = ["id,medical_specialty,transcription"] + [
        f'{i},General,"Patient seen today. Temperature {37 + i} C. Cough is dry."' for i in (1, 2, 3)
    ]
    corpus.write_text("\n".join(rows) + "\n")
    config = task.config_path.read_text().replace(f'corpus = "{task.corpus}"', f'corpus = "{corpus}"')
    task.config_path.write_text(config)
    gold = task.split_path("dev")
    row = {"id": "g-mts", "text": "Seen today.", "labels": [], "source": "gold", "note_id": "mts-2", "split": "dev"}
    gold.write_text(gold.read_text() + json.dumps(row) + "\n")
    task = load_task(task.root)
    out = tmp_path / "corpus-tasks.json"
    result = export_review(task, "corpus", n=100, strategy="random", out=out)
    notes = {t["data"]["note_id"] for t in json.loads(out.read_text())}
    assert notes == {"mts-1", "mts-3"} and result.exported == result.candidates > 0


def test_cli_review_errors_exit_2_without_traceback(task, sentences: Path, tmp_path: Path, capsys) -> None:
    from clinsynth.app.cli import main

    out = tmp_path / "cli-tasks.json"
    args = ["review", "export", "--task", str(task.root), "--source", str(sentences), "--n", "3"]
    assert main([*args, "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err  # uncertain without a model
    assert main([*args, "--strategy", "random", "--out", str(out)]) == 0
    assert "3 sentences" in capsys.readouterr().out
    tasks = annotate(json.loads(out.read_text()), {t["data"]["id"]: [["SNEEZE"]] for t in json.loads(out.read_text())})
    path = write_export(tmp_path, tasks)
    before = gold_bytes(task)
    assert main(["review", "import", "--task", str(task.root), "--input", str(path), "--split", "dev"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "SNEEZE" in err and "Traceback" not in err
    assert gold_bytes(task) == before


def test_a_labelled_file_pre_annotates_a_new_task_with_its_llm_labels(task, tmp_path: Path) -> None:
    """A new task's first gold: `clinsynth label` output, exported with its labels as predictions."""
    labelled = tmp_path / "prelabel.jsonl"
    prov = Provenance(lm="local", program="DataToLabel", program_sha256="0" * 64, confidence=0.75)
    write_records(
        labelled,
        [
            Record("s1", "Febrile to 39 C overnight.", ["FEVER"], "silver", note_id="new-1", provenance=prov),
            Record("s3", "Abdomen soft.", [], "silver", note_id="new-2", provenance=prov),
        ],
    )
    out = tmp_path / "tasks.json"
    result = export_review(task, str(labelled), n=5, strategy="random", out=out)
    tasks = {t["data"]["id"]: t for t in json.loads(out.read_text())}
    assert result.exported == 2 and set(tasks) == {"s1", "s3"}
    (fever,) = tasks["s1"]["predictions"]
    assert fever["result"][0]["value"]["choices"] == ["FEVER"] and fever["score"] == 0.75
    assert fever["model_version"] == "prelabel.jsonl:local"
    assert tasks["s3"]["predictions"][0]["result"] == []  # NONE: nothing ticked
    assert tasks["s1"]["data"]["note_id"] == "new-1"


def test_kappa_keeps_disagreements_settled_by_marking_one_annotation_ground_truth(task, sentences, tmp_path) -> None:
    """Issue 26: marking the winner of a disagreement as ground truth used to drop the pair (kappa 1.000)."""
    tasks = exported(task, sentences, tmp_path)
    labels = {"s1": [["FEVER"], ["FEVER"]], "s2": [["FEVER"], []], "s3": [["COUGH"], ["COUGH"]],
              "s4": [["COUGH"], ["COUGH"]], "s5": [[], []], "s6": [["FEVER"], ["FEVER"]]}  # fmt: skip
    edited = annotate(tasks, labels)
    s2 = next(t for t in edited if t["data"]["id"] == "s2")
    s2["annotations"][1]["ground_truth"] = True  # the adjudicator sided with the second annotator
    result = import_review(task, write_export(tmp_path, edited), "test")
    assert result.double_annotated == 6
    # FEVER: A 110001, B 100001 -> po 5/6, pe (3*2 + 3*4)/36 = 1/2 -> 2/3; COUGH: identical -> 1.
    assert result.kappa["FEVER"] == round(2 / 3, 4) and result.kappa["COUGH"] == 1.0
    assert {r.id: r.labels for r in read_records(task.split_path("test"))}["s2"] == []


def test_bronze_verdict_agreement_is_reported(task, tmp_path: Path) -> None:
    write_records(task.bronze, bronze_records())
    out = tmp_path / "bronze-tasks.json"
    export_review(task, "bronze", n=3, strategy="random", out=out)
    tasks = json.loads(out.read_text())
    edited = annotate(tasks, {t["data"]["id"]: [t["predictions"][0]["result"][0]["value"]["choices"]] * 2
                              for t in tasks})  # fmt: skip
    verdicts = {"b1": ("ACCEPT", "ACCEPT"), "b2": ("ACCEPT", "REJECT"), "b3": ("REJECT", "REJECT")}
    for t in edited:
        for ann, verdict in zip(t["annotations"], verdicts[t["data"]["id"]], strict=True):
            ann["result"].append({"from_name": "verdict", "to_name": "text", "type": "choices",
                                  "value": {"choices": [verdict]}})  # fmt: skip
    result = import_review(task, write_export(tmp_path, edited), None)
    # 2 of 3 agree; A: AAR, B: ARR -> po 2/3, pe (2*1 + 1*2)/9 = 4/9 -> (2/3 - 4/9) / (5/9) = 0.4
    assert result.double_verdicts == 3 and result.verdict_agreement == round(2 / 3, 4)
    assert result.verdict_kappa == 0.4


def test_silver_export_leaves_gold_notes_out(task, tmp_path: Path) -> None:
    prov = Provenance(lm="local", program="DataToLabel", program_sha256="x", confidence=0.8)
    gold_note = read_records(task.split_path("train"))[0].note_id
    silver = [Record("x1", "Febrile.", ["FEVER"], "silver", note_id=gold_note, provenance=prov),
              Record("x2", "Coughing.", ["COUGH"], "silver", note_id="mts-new", provenance=prov)]  # fmt: skip
    write_records(task.silver, silver)
    out = tmp_path / "silver-tasks.json"
    export_review(task, "silver", n=10, strategy="random", out=out)
    assert [t["data"]["id"] for t in json.loads(out.read_text())] == ["x2"]

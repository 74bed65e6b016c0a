import json
import re
from pathlib import Path

import pytest

from clinsynth import bronze_filters as bf
from clinsynth.lm import make_lm
from clinsynth.records import read_records
from clinsynth.taxonomy import load_taxonomy
from programs import generate as gen_cli
from programs.data_to_label import DataToLabel
from programs.generate import BronzeGenerator, GenerateConfig, write_outputs
from programs.label_to_data import LabelToData
from tests.bow import bow_embed
from tests.conftest import chat_reply

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
                sentences = [f"Coughing fits {w} in the mornings.", f"Mild {w} rash on both arms."]
            return 200, chat_reply(json.dumps({"sentences": sentences}))
        self.label_requests += 1
        sentence = prompt.split("[[ ## sentence ## ]]")[-1].lower()
        labels = []
        if "fever" in sentence and "denies" not in sentence:
            labels.append("FEVER")
        if "cough" in sentence:
            labels.append("COUGH")
        return 200, chat_reply(json.dumps({"categories": labels}))


def run(tmp_path: Path, server, taxonomy, **cfg) -> gen_cli.GenerateResult:
    handle = make_lm("openai/fake", api_base=server.api_base, num_retries=0, cache=False, adapter="json")
    config = GenerateConfig(per_category=3, negatives=2, multi_label=0, per_call=3, overgenerate=1.0, **cfg)
    runner = BronzeGenerator(
        taxonomy,
        LabelToData(taxonomy, n=3),
        DataToLabel(taxonomy),
        handle,
        tmp_path / "bronze.jsonl",
        config,
        GOLD,
        bow_embed,
        show_progress=False,
    )
    result = runner.run()
    write_outputs(result, tmp_path / "bronze.jsonl", config, handle.name, taxonomy)
    return result


@pytest.fixture
def taxonomy(mini_taxonomy_path):
    return load_taxonomy(mini_taxonomy_path)


def test_generates_filters_and_counts_every_drop(tmp_path: Path, taxonomy, fake_openai):
    with fake_openai(ScriptedLM()) as server:
        result = run(tmp_path, server, taxonomy)
    fever, cough, none = result.counts["FEVER"], result.counts["COUGH"], result.counts["NONE"]
    # Three rounds of one call each: one good sentence a call survives.
    assert fever["kept"] == 3 and fever["generated"] == 9
    assert fever[bf.PHI] == 3 and fever[bf.LEAKAGE] == 1 and fever[bf.EXACT_DUPLICATE] == 2
    assert cough["kept"] == 3 and cough[bf.ROUND_TRIP] == 3  # the rash sentences
    assert none["kept"] == 2 and none[bf.ROUND_TRIP] == 2  # "Cough resolved" is not NONE for the labeller
    for counts in result.counts.values():
        dropped = sum(counts[f] for f in (*bf.FILTERS, bf.OVER_QUOTA))
        assert counts["generated"] == dropped + counts["kept"]

    records = read_records(tmp_path / "bronze.jsonl", taxonomy)
    assert len(records) == 8 and {r.source for r in records} == {"bronze"}
    assert not {r.text for r in records} & set(GOLD)
    assert all(not re.search(r"Dr\.", r.text) for r in records)
    for r in records:
        p = r.provenance
        assert p.lm == "openai/fake" and p.program == gen_cli.PROGRAM_NAME and len(p.program_sha256) == 64
        assert p.seed == 0 and p.created_at
        for key in ("target", "note_type", "section", "reporter", "severity", "tense", "length", "roundtrip_labels"):
            assert key in p.attributes, key
    assert sorted(r.labels for r in records if r.provenance.attributes["target"] == "NONE") == [[], []]

    report = json.loads((tmp_path / "bronze.jsonl.report.json").read_text())
    assert report["counts"]["FEVER"][bf.PHI] == 3 and report["kept_by_label"]["FEVER"] == 3
    dropped = [json.loads(line) for line in (tmp_path / "bronze.jsonl.dropped.jsonl").open()]
    assert {d["filter"] for d in dropped} == {bf.PHI, bf.LEAKAGE, bf.EXACT_DUPLICATE, bf.ROUND_TRIP}
    # the labels each sentence was written for travel with it (the no-round-trip ablation uses them)
    assert all((d["labels"] == []) == (d["target"] == "NONE") for d in dropped)
    assert {tuple(d["labels"]) for d in dropped if d["target"] == "FEVER"} == {("FEVER",)}


def test_relabel_policy_keeps_drifted_sentences_with_the_labellers_labels(tmp_path: Path, taxonomy, fake_openai):
    with fake_openai(ScriptedLM()) as server:
        result = run(tmp_path, server, taxonomy, round_trip="relabel", max_rounds=1)
    assert result.counts["COUGH"]["relabelled"] == 1
    rash = next(r for r in result.kept if "rash" in r.text)
    assert rash.labels == [] and rash.provenance.attributes["generated_labels"] == ["COUGH"]


def test_a_rerun_resumes_from_the_calls_already_made(tmp_path: Path, taxonomy, fake_openai):
    flaky = ScriptedLM(fail_generation_after=2)
    with fake_openai(flaky) as server:
        first = run(tmp_path, server, taxonomy, attempts=1)
    assert first.failed_calls > 0
    failures = (tmp_path / "bronze.jsonl.failures.jsonl").read_text().splitlines()
    assert len(failures) == first.failed_calls and "overloaded" in failures[0]
    made = len((tmp_path / "bronze.jsonl.calls.jsonl").read_text().splitlines())
    assert made == 2

    healthy = ScriptedLM()
    with fake_openai(healthy) as server:
        second = run(tmp_path, server, taxonomy)
    assert second.failed_calls == 0 and not (tmp_path / "bronze.jsonl.failures.jsonl").exists()
    assert {t: c["kept"] for t, c in second.counts.items()} == {"FEVER": 3, "COUGH": 3, "NONE": 2}
    labelled_before = flaky.label_requests

    again = ScriptedLM()
    with fake_openai(again) as server:
        third = run(tmp_path, server, taxonomy)
    # Everything is on disk: no LM call at all, the same records.
    assert again.generation_requests == 0 and again.label_requests == 0
    assert [r.text for r in third.kept] == [r.text for r in second.kept]
    assert labelled_before + healthy.label_requests == len(
        (tmp_path / "bronze.jsonl.roundtrip.jsonl").read_text().splitlines()
    )


def test_cli_rejects_unknown_categories_before_starting_an_lm(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setattr(gen_cli, "make_lm", lambda *a, **k: pytest.fail("no LM should start"))
    code = gen_cli.main(["--out", str(tmp_path / "b.jsonl"), "--categories", "FEVERISH", "--no-progress"])
    assert code == 2 and "unknown categories ['FEVERISH']" in capsys.readouterr().err
    assert not (tmp_path / "b.jsonl").exists()

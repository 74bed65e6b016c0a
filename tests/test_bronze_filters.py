from clinsynth.data import bronze_filters as bf
from clinsynth.data.textstats import distinct_n, normalise
from tests.bow import bow_embed


def cand(i: int, text: str, labels=("FEVER",), target="FEVER") -> bf.Candidate:
    return bf.Candidate(id=f"c{i}", text=text, target=target, labels=tuple(labels), call_id=f"{target}:0:0")


def test_exact_duplicates_ignore_case_and_punctuation():
    kept, dropped = bf.exact_dedup([cand(1, "Fever to 39 C."), cand(2, "fever to 39 c"), cand(3, "Chills.")])
    assert [c.id for c in kept] == ["c1", "c3"]
    assert dropped[0].candidate.id == "c2" and dropped[0].filter == bf.EXACT_DUPLICATE


def test_near_duplicates_are_dropped_within_a_label_set_only():
    cands = [
        cand(1, "the patient has a high fever today"),
        cand(2, "today the patient has a high fever"),  # same words: cosine 1
        cand(3, "the patient has a high fever today", labels=(), target="NONE"),  # other label set: kept
        cand(4, "cough at night keeps him awake"),
    ]
    kept, dropped = bf.near_dedup(cands, bow_embed, threshold=0.9)
    assert [c.id for c in kept] == ["c1", "c3", "c4"]
    assert [d.candidate.id for d in dropped] == ["c2"] and "cosine 1.000" in dropped[0].detail


def test_leakage_by_cosine_or_shared_eight_gram():
    gold = ["She was found wandering in the parking lot late at night.", "MMSE 24/30."]
    cands = [
        cand(1, "Late at night she was found wandering in the parking lot."),  # same words
        cand(2, "Reportedly she was found wandering in the parking lot again."),  # 8-gram shared
        cand(3, "Temperature 39 C with chills."),
    ]
    audit = bf.audit_leakage(cands, gold, bow_embed, cosine_threshold=0.95, ngram=8)
    kept, dropped = bf.leakage_filter(cands, audit)
    assert [c.id for c in kept] == ["c3"]
    assert {d.candidate.id for d in dropped} == {"c1", "c2"}
    assert "shares 'she was found wandering in the parking lot'" in next(
        d.detail for d in dropped if d.candidate.id == "c2"
    )
    assert kept[0].info["nearest_gold_cosine"] < 0.95


def test_a_sentence_that_repeats_its_request_is_an_echo():
    request = ("Each sentence documents packs per day or pack-years, written with the shorthand '1 ppd' "
               "(category TOBACCO). About the patient only: never a relative's or anyone else's status.")  # fmt: skip
    cands = [
        cand(1, "Smokes 1 ppd x 20 yrs.", target="TOBACCO"),
        cand(2, "The patient smokes cigarettes, with the shorthand '1 ppd'.", target="TOBACCO"),
        cand(3, "Pt reports packs per day or pack-years of smoking.", target="TOBACCO"),
        cand(4, "Never a relative's or anyone else's status: she smokes.", target="TOBACCO"),
        cand(5, "Pt reports packs per day or pack-years of smoking.", target="OTHER"),  # another call's request
    ]
    kept, dropped = bf.echo_filter(cands, {"TOBACCO:0:0": request, "OTHER:0:0": "Each note documents fever."})
    assert [c.id for c in kept] == ["c1", "c5"]
    assert [d.filter for d in dropped] == [bf.ECHO] * 3
    assert dropped[0].detail == "says 'shorthand'"
    assert dropped[1].detail == "repeats its request: 'packs per day or pack'"


def test_phi_filter_names_what_it_found():
    kept, dropped = bf.phi_filter([cand(1, "Seen by Dr. Smith on 01/02/2020."), cand(2, "Fever resolved.")])
    assert [c.id for c in kept] == ["c2"]
    assert "name: Dr. Smith" in dropped[0].detail and "date: 01/02/2020" in dropped[0].detail


def test_round_trip_agreement():
    assert bf.round_trip_agrees(["FEVER"], ["FEVER", "COUGH"])
    assert not bf.round_trip_agrees(["FEVER", "COUGH"], ["FEVER"])
    assert bf.round_trip_agrees([], [])
    assert not bf.round_trip_agrees([], ["FEVER"])


def test_text_measures():
    assert normalise("Fever, 39 C!") == "fever 39 c"
    assert distinct_n(["a b a b"], 1) == 0.5
    assert distinct_n(["a b c", "a b d"], 2) == 3 / 4
    assert distinct_n([], 2) == 0.0


def test_the_subject_filter_drops_a_relatives_use_labelled_as_the_patients():
    from clinsynth.data.task import load_task

    rules = load_task("tasks/sdoh").rules
    candidates = [
        bf.Candidate("a", "Her husband smokes two packs a day.", "TOBACCO", ("TOBACCO",), "c1"),
        bf.Candidate("b", "She smokes two packs a day.", "TOBACCO", ("TOBACCO",), "c1"),
        bf.Candidate("c", "Lives with her husband, who drinks heavily.", "LIVING_SITUATION", ("LIVING_SITUATION",),
                     "c2"),  # fmt: skip
        bf.Candidate("d", "Father was an alcoholic.", "NONE", (), "c3"),  # a hard negative: right as it is
    ]
    kept, dropped = bf.subject_filter(candidates, rules)
    assert [c.id for c in kept] == ["b", "c", "d"]
    assert [(d.candidate.id, d.filter) for d in dropped] == [("a", bf.SUBJECT)]
    assert "TOBACCO" in dropped[0].detail and "other person" in dropped[0].detail


def test_refiltering_a_bronze_set_moves_a_relatives_use_to_the_dropped_file(tmp_path):
    import dataclasses
    import json

    from clinsynth.programs.steps.bronze import refilter_subject

    from clinsynth.data.records import Provenance, Record, read_records, write_records
    from clinsynth.data.task import load_task

    task = load_task("tasks/sdoh")
    out = tmp_path / "bronze.jsonl"
    prov = Provenance(lm="local", program="p", program_sha256="0", attributes={"target": "TOBACCO"})
    write_records(out, [Record("b1", "Her husband smokes a pack a day.", ["TOBACCO"], "bronze", provenance=prov),
                        Record("b2", "She smokes a pack a day.", ["TOBACCO"], "bronze", provenance=prov)])  # fmt: skip
    (tmp_path / "bronze.jsonl.report.json").write_text(json.dumps({"counts": {"TOBACCO": {"kept": 2}}}))
    gone = refilter_subject(dataclasses.replace(task, bronze=out), out)
    assert [row["id"] for row in gone] == ["b1"]
    assert [r.id for r in read_records(out)] == ["b2"]
    dropped = [json.loads(line) for line in (tmp_path / "bronze.jsonl.dropped.jsonl").read_text().splitlines()]
    assert dropped[0]["filter"] == bf.SUBJECT and dropped[0]["text"].startswith("Her husband")
    report = json.loads((tmp_path / "bronze.jsonl.report.json").read_text())
    assert report["counts"]["TOBACCO"] == {"kept": 1, bf.SUBJECT: 1}
    assert refilter_subject(task, out) == []  # a second pass finds nothing more


def test_the_committed_bronze_sets_follow_the_subject_rule():
    from clinsynth.data.records import read_records
    from clinsynth.data.task import load_task

    for folder in ("tasks/ad_signs", "tasks/sdoh"):
        task = load_task(folder)
        broken = [r.text for r in read_records(task.bronze) if bf.subject_violations(r.text, r.labels, task.rules)]
        assert broken == [], folder

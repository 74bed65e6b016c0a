"""The committed bronze set holds what its data card promises."""

import json
import re

import pytest

from clinsynth.data.gold import SPLITS
from clinsynth.data.phi import scan
from clinsynth.data.records import read_records
from clinsynth.data.task import BUNDLED_TASK, load_task
from clinsynth.data.textstats import ngrams, normalise, tokens
from clinsynth.paths import PROJECT_ROOT
from tests.conftest import ad_task, ad_taxonomy

BRONZE = BUNDLED_TASK / "data" / "bronze.jsonl"


def test_committed_bronze_records_have_provenance_and_no_gold_text_or_phi():
    taxonomy = ad_taxonomy()
    records = read_records(BRONZE, taxonomy)  # schema and labels checked on read
    assert records and {r.source for r in records} == {"bronze"}
    gold = [r.text for s in SPLITS for r in read_records(ad_task().split_path(s), taxonomy)]
    gold_exact = {normalise(t) for t in gold}
    gold_grams = set().union(*(ngrams(tokens(t), 8) for t in gold))
    for r in records:
        p = r.provenance
        assert p and p.lm and p.program and len(p.program_sha256) == 64 and p.seed is not None and p.created_at
        for key in ("target", "call_id", "note_type", "reporter", "roundtrip_labels"):
            assert key in p.attributes, (r.id, key)
        assert normalise(r.text) not in gold_exact
        assert not ngrams(tokens(r.text), 8) & gold_grams, r.text
        assert scan(r.text) == [], r.text
    report = json.loads(BRONZE.with_name("bronze.jsonl.report.json").read_text())
    assert sum(c.get("kept", 0) for c in report["counts"].values()) == len(records)


def shorthand_pattern(form: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(form)}(?!\w)", re.IGNORECASE)


@pytest.mark.parametrize("task_dir", ["ad_signs", "sdoh"])
def test_committed_bronze_passed_its_round_trip_and_covers_each_categorys_shorthand(task_dir):
    # The subject rule on the committed sets: tests/test_bronze_filters.py.
    task = load_task(PROJECT_ROOT / "tasks" / task_dir)
    records = read_records(task.bronze, task.taxonomy)
    for r in records:
        # The round-trip labeller read every kept sentence and gave it the same labels.
        assert r.provenance.attributes.get("roundtrip_agrees") is True, (r.id, r.text)
        assert not re.search(r"\bshorthand\b|\bcategor(y|ies)\b", r.text, re.IGNORECASE), (r.id, r.text)
    for category in task.taxonomy.categories:
        forms = [shorthand_pattern(f) for f in category.generation.shorthand]
        with_it = [r.text for r in records if category.name in r.labels and any(p.search(r.text) for p in forms)]
        assert with_it, f"{task_dir}: no bronze sentence of {category.name} uses its shorthand"

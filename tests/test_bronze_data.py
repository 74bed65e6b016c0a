"""The committed bronze set holds what its data card promises."""

import json

from clinsynth.data.gold import SPLITS
from clinsynth.data.phi import scan
from clinsynth.data.records import read_records
from clinsynth.data.task import BUNDLED_TASK
from clinsynth.data.textstats import ngrams, normalise, tokens
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

"""The real embedded LLM, end to end, on a few sentences (needs the 'local' extra)."""

from pathlib import Path

import pytest
from clinsynth.programs import label as label_cli
from clinsynth.programs.steps.label import default_labeller_path, load_labeller

from clinsynth.data.records import read_records
from clinsynth.data.task import LMSpec
from clinsynth.fingerprint import program_sha256
from tests.conftest import ad_task, ad_taxonomy

pytestmark = pytest.mark.integration

SENTENCES = [
    "Her husband has noticed that she repeats the same questions.",
    "MMSE score was 21/30.",
    "The incision was closed with staples.",
]


def test_embedded_llm_labels_a_file_and_resumes(tmp_path: Path):
    pytest.importorskip("xllamacpp")
    src = tmp_path / "sentences.txt"
    src.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "silver.jsonl"
    args = ["--lm", "local", "--input", str(src), "--out", str(out), "--no-progress", "--sensitivity", "private"]
    assert label_cli.main(args) == 0

    taxonomy = ad_taxonomy()
    records = read_records(out, taxonomy)  # validates every label against the taxonomy
    # The committed compiled program is used by default.
    compiled = default_labeller_path(ad_task(), LMSpec("local"))
    assert compiled is not None
    expected_sha = program_sha256(load_labeller(taxonomy, compiled), taxonomy.guideline_text)
    failures = out.with_name(out.name + ".failures.jsonl")
    n_failed = len(failures.read_text().splitlines()) if failures.exists() else 0
    assert len(records) + n_failed == len(SENTENCES) and len(records) >= 2
    for rec in records:
        assert rec.source == "silver" and rec.text in SENTENCES
        assert rec.provenance.lm == "local/qwen2.5-coder-1.5b-instruct-q4_k_m"
        assert rec.provenance.program_sha256 == expected_sha and rec.provenance.created_at
        # Confidence from the answer's token logprobs, a probability.
        assert 0 < rec.provenance.confidence <= 1
        assert rec.provenance.attributes["confidence_method"] == "logprob"

    assert label_cli.main(args) == 0  # rerun resumes: no duplicates
    again = read_records(out, taxonomy)
    assert [r.id for r in again][: len(records)] == [r.id for r in records]
    assert len({r.id for r in again}) == len(again) <= len(SENTENCES)

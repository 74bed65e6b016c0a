"""Confident learning on a bronze set: contradicted labels are found and leave the set."""

import json

import numpy as np

from clinsynth.data import bronze_filters as bf
from clinsynth.data.records import Provenance, Record, read_records, write_records
from clinsynth.model.label_issues import find_label_issues, out_of_fold_probabilities

NAMES = ("MEMORY", "MOOD", "GAIT")


def clustered(per_category: int = 20, seed: int = 0) -> tuple[np.ndarray, list[list[str]]]:
    """Sentences as points around one centre per category (and one for NONE), correctly labelled."""
    rng = np.random.default_rng(seed)
    centres = np.eye(len(NAMES) + 1, 16)
    vectors, labels = [], []
    for c, name in enumerate([*NAMES, None]):
        for _ in range(per_category):
            vectors.append(centres[c] + rng.normal(0, 0.15, 16))
            labels.append([name] if name else [])
    return np.asarray(vectors), labels


def test_out_of_fold_probabilities_follow_the_clusters_and_a_rare_category_keeps_its_label():
    vectors, labels = clustered()
    targets = np.array([[n in row for n in NAMES] for row in labels], dtype=int)
    targets[:, 2] = 0  # GAIT: 2 positives, too few to cross-fit over 5 folds
    targets[[0, 1], 2] = 1
    probabilities = out_of_fold_probabilities(vectors, targets)
    assert probabilities[:20, 0].min() > 0.5 and probabilities[20:, 0].max() < 0.5  # MEMORY held out
    assert np.array_equal(probabilities[:, 2], targets[:, 2])  # the rare column is its labels


def test_flipped_labels_are_found_and_correct_ones_are_left_alone():
    vectors, labels = clustered()
    labels[3] = ["MOOD"]  # a MEMORY sentence labelled MOOD
    labels[65] = ["GAIT"]  # a NONE sentence labelled GAIT
    issues = find_label_issues(vectors, labels, NAMES)
    found = {issue.index for issue in issues}
    assert {3, 65} <= found
    assert len(found) <= 4  # the other 78 correct labels are (nearly all) kept
    assert all(0.0 <= issue.quality <= 1.0 for issue in issues)
    worst = {issue.index: issue.quality for issue in issues}
    assert worst[3] < 0.5 and worst[65] < 0.5


def test_dropping_label_issues_moves_them_to_the_dropped_file_with_their_quality(tmp_path, monkeypatch):
    from clinsynth.programs.steps.bronze import drop_label_issues

    import clinsynth.model.embeddings as embeddings

    vectors, labels = clustered()
    labels[3] = ["MOOD"]
    texts = [f"sentence {i}" for i in range(len(labels))]
    by_text = dict(zip(texts, vectors, strict=True))
    monkeypatch.setattr(embeddings, "encode", lambda batch: np.asarray([by_text[t] for t in batch]))
    out = tmp_path / "bronze.jsonl"
    prov = Provenance(lm="local", program="p", program_sha256="0", attributes={"target": "MEMORY"})
    write_records(out, [Record(f"b{i}", t, row, "bronze", provenance=prov)
                        for i, (t, row) in enumerate(zip(texts, labels, strict=True))])  # fmt: skip
    (tmp_path / "bronze.jsonl.report.json").write_text(json.dumps({"counts": {"MEMORY": {"kept": 80}}}))

    gone = drop_label_issues(out, NAMES)

    ids = {row["id"] for row in gone}
    assert "b3" in ids
    assert {r.id for r in read_records(out)} == {f"b{i}" for i in range(80)} - ids
    dropped = [json.loads(line) for line in (tmp_path / "bronze.jsonl.dropped.jsonl").read_text().splitlines()]
    assert {row["id"] for row in dropped} == ids
    assert all(row["filter"] == bf.LABEL_ISSUE and row["detail"].startswith("label quality ") for row in dropped)
    report = json.loads((tmp_path / "bronze.jsonl.report.json").read_text())
    assert report["counts"]["MEMORY"] == {"kept": 80 - len(ids), bf.LABEL_ISSUE: len(ids)}
    assert bf.LABEL_ISSUE in report["filters"]

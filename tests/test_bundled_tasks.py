"""The task folders shipped in tasks/: each loads, and its gold validates and is big enough to learn from."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from clinsynth.data.task import load_task

TASKS = sorted(p.parent for p in (Path(__file__).resolve().parent.parent / "tasks").glob("*/clinsynth.toml"))


def test_both_bundled_tasks_are_found():
    assert {p.name for p in TASKS} >= {"ad_signs", "sdoh"}


@pytest.mark.parametrize("folder", TASKS, ids=lambda p: p.name)
def test_a_bundled_task_loads_and_its_gold_validates(folder: Path):
    task = load_task(folder)
    gold = task.gold(("train", "dev", "test"))  # load_gold: labels, ids, note-level splits
    notes = [{r.note_id for r in gold[s]} for s in ("train", "dev", "test")]
    assert not (notes[0] & notes[1] or notes[0] & notes[2] or notes[1] & notes[2])
    assert all(gold[s] for s in ("train", "dev", "test"))
    assert task.examples and set(task.quick_categories) <= set(task.taxonomy.names)


def test_sdoh_gold_meets_its_data_card():
    task = load_task(next(p for p in TASKS if p.name == "sdoh"))
    records = [r for rs in task.gold(("train", "dev", "test")).values() for r in rs]
    per_category = Counter(label for r in records for label in r.labels)
    assert len(records) >= 500 and sum(bool(r.labels) for r in records) >= 200
    assert min(per_category[name] for name in task.taxonomy.names) >= 25
    assert all(r.provenance and r.provenance.attributes.get("annotators") for r in records)

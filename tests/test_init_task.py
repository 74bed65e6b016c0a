from __future__ import annotations

from pathlib import Path

import pytest

from clinsynth.app.init_task import init_task, task_name
from clinsynth.data.gold import SPLITS, load_gold
from clinsynth.data.task import load_task
from clinsynth.data.taxonomy import load_taxonomy
from clinsynth.errors import ClinsynthError


def test_init_writes_a_valid_task(tmp_path: Path) -> None:
    target = tmp_path / "My Task-1"
    result = init_task(target)
    assert result.root == target.resolve()
    assert all(p.is_file() for p in result.files)
    assert not list(target.rglob("*.tmp"))

    task = load_task(target)
    assert task.name == "my_task_1"
    assert task.taxonomy.names == ("SMOKING", "ALCOHOL_USE")
    assert load_taxonomy(task.taxonomy_path).names == task.taxonomy.names
    assert all(c.generation.aspects and c.examples for c in task.taxonomy.categories)
    assert set(task.quick_categories) <= set(task.taxonomy.names) and len(task.quick_categories) == 2
    assert len(task.examples) == 3
    assert task.corpus.name == "mtsamples.csv.gz"  # the bundled corpus by default
    assert task.silver == (target / "data" / "silver.jsonl").resolve()
    assert {task.lm(role).model for role in ("labeler", "generator", "prompt_model")} == {"local"}

    # The example rule list loads and labels its own gold stubs as the guideline says.
    assert task.rules is not None and task.rules_path == (target / "rules.yaml").resolve()
    stubs = [(r.text, list(r.labels)) for split in SPLITS for r in task.gold()[split]]
    assert [task.rules.labels(text) for text, _ in stubs] == [labels for _, labels in stubs]

    gold = load_gold(task.gold_dir, task.taxonomy)
    minimum = {"train": 6, "dev": 4, "test": 4}
    for split in SPLITS:
        records = gold[split]
        assert len(records) >= minimum[split]
        labels = {label for r in records for label in r.labels}
        assert labels == {"SMOKING", "ALCOHOL_USE"}
        assert any(not r.labels for r in records)
    assert task.gold() == gold

    assert any("run --quick" in c and str(target) in c for c in result.next_commands)
    assert any(c.startswith("clinsynth predict") for c in result.next_commands)
    readme = (target / "README.md").read_text(encoding="utf-8")
    assert all(c in readme for c in result.next_commands)


def test_name_is_kept_when_given(tmp_path: Path) -> None:
    init_task(tmp_path / "x", name="smoking_v2")
    assert load_task(tmp_path / "x").name == "smoking_v2"
    assert task_name(tmp_path / "2024 notes") == "task_2024_notes"


def test_second_init_refuses_unless_forced(tmp_path: Path) -> None:
    result = init_task(tmp_path)
    config = tmp_path / "clinsynth.toml"
    config.write_text('name = "edited"\n', encoding="utf-8")
    before = {p: p.read_bytes() for p in result.files}

    with pytest.raises(ClinsynthError, match="already exists"):
        init_task(tmp_path)
    assert {p: p.read_bytes() for p in result.files} == before

    init_task(tmp_path, force=True)
    assert load_task(tmp_path).name == task_name(tmp_path)


def test_refuses_to_overwrite_existing_gold(tmp_path: Path) -> None:
    gold = tmp_path / "gold" / "train.jsonl"
    gold.parent.mkdir()
    gold.write_text("mine\n", encoding="utf-8")
    with pytest.raises(ClinsynthError):
        init_task(tmp_path)
    assert gold.read_text(encoding="utf-8") == "mine\n"
    assert not (tmp_path / "clinsynth.toml").exists()


def test_silver_and_bronze_settings_come_from_the_task(tmp_path: Path) -> None:
    from clinsynth.programs.steps.bronze import BronzeConfig
    from clinsynth.programs.steps.label import LabelConfig

    bundled = load_task()
    assert LabelConfig.for_silver(bundled).limit == 2000
    assert LabelConfig.for_silver(bundled).pool == 30000
    assert BronzeConfig.for_task(bundled).max_rounds == 10
    assert BronzeConfig.for_task(bundled, max_rounds=1).max_rounds == 1

    init_task(tmp_path / "t")
    config = tmp_path / "t" / "clinsynth.toml"
    typo = config.read_text(encoding="utf-8").replace("[generate]\n", "[generate]\nper_categry = 5\n")
    config.write_text(typo, encoding="utf-8")
    with pytest.raises(ClinsynthError, match=r"generate.*per_categry"):
        load_task(tmp_path / "t")

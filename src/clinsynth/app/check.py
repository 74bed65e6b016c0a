"""``clinsynth check``: everything a run of a task will read, validated in seconds, before any LM work.

The main job runs it first, so a bad gold label or a template category left in
``clinsynth.toml`` stops the run at once with the file, line and field, instead of after
minutes of LLM calls. Problems that do not stop a run (a category with too few gold
examples to learn) come back as warnings.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from clinsynth.data.records import read_records
from clinsynth.errors import DataError

# Fewer positives than this in gold train and the classifier barely learns a category
# (a 6-sentence gold set predicts every category near 0.5).
MIN_GOLD_PER_CATEGORY = 8


@dataclass
class CheckReport:
    checked: list[tuple[str, str]] = field(default_factory=list)  # (what, what was found)
    warnings: list[str] = field(default_factory=list)


def small_gold_warnings(train: list[Any], names: tuple[str, ...] | list[str]) -> list[str]:
    """One line per category with fewer than MIN_GOLD_PER_CATEGORY positives in gold train."""
    counts = Counter(label for r in train for label in r.labels)
    thin = [f"{n} {counts[n]}" for n in names if counts[n] < MIN_GOLD_PER_CATEGORY]
    if not thin:
        return []
    return [
        f"gold train has fewer than {MIN_GOLD_PER_CATEGORY} examples of {len(thin)} categories ({', '.join(thin)}): "
        "the classifier will barely learn them; annotate more (clinsynth review) before trusting its scores"
    ]


def check_task(task: Any) -> CheckReport:
    """Validate the task's config, taxonomy, gold (splits and whole notes), rule list, examples and data sets."""
    report = CheckReport()
    add = report.checked.append
    add(("config", task.relative(task.config_path)))
    taxonomy = task.taxonomy
    add(("taxonomy", f"{len(taxonomy.names)} categories ({task.relative(task.taxonomy_path)})"))
    for name in task.quick_categories:
        if name not in taxonomy.names:
            raise DataError(f"unknown category {name!r}; the taxonomy has {', '.join(taxonomy.names)}",
                            path=task.config_path, field="examples.quick_categories")  # fmt: skip
    gold = task.gold()
    sizes = ", ".join(f"{split} {len(records)}" for split, records in gold.items())
    add(("gold", f"{sizes} ({task.relative(task.gold_dir)})"))
    for split in ("train", "dev", "test"):
        whole = task.whole_notes(gold[split], split)
        if whole:
            add((f"whole {split} notes", f"{len(whole)} sentences of {len({r.note_id for r in whole})} notes"))
    if task.rules is not None:
        add(("rule list", task.relative(task.rules_path)))
    for name, path in (("silver", task.silver), ("bronze", task.bronze)):
        if path.exists():
            add((name, f"{len(read_records(path, taxonomy))} records ({task.relative(path)})"))
    if not task.corpus.exists():
        report.warnings.append(f"no corpus at {task.corpus}: silver and --regenerate need one")
    report.warnings += small_gold_warnings(gold["train"], taxonomy.names)
    return report

"""Training mixes: gold train plus LLM-made data, named like ``gold+silver+bronze``.

Parts of a mix:

- ``gold``: the expert-labelled gold train split;
- ``whole-notes``: every other sentence of some whole gold training notes
  (``whole_train_notes.jsonl``), labelled like gold: the natural distribution of notes, mostly
  NONE, beside the picked sentences of ``gold`` (cross-validation, whose pool is gold train
  and dev, also takes the whole dev notes' sentences of its training notes);
- ``silver``: corpus sentences labelled by data-to-label;
- ``silver-confident``: silver records whose label confidence is at least
  ``silver_min_confidence`` (the labeller over-labels at low confidence);
- ``bronze``: sentences written by label-to-data that passed every filter, less those a
  reviewer rejected (``clinsynth review import``: ``<bronze>.rejected.jsonl``);
- ``bronze-unfiltered``: the same targets without the round-trip filter: kept sentences
  plus those the round trip dropped, sampled down to the kept count per target so that
  only the filter, not the size, differs from ``bronze``;
- ``bronze:N``: at most N bronze sentences per target category (a fixed shuffle, so
  ``bronze:25`` is inside ``bronze:50``): the points of a bronze learning curve.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinsynth.data.gold import WHOLE_NOTES_FILES, load_gold, whole_note_extras
from clinsynth.data.records import Record, iter_jsonl, read_records, side_path
from clinsynth.data.taxonomy import NONE_LABEL, Taxonomy
from clinsynth.errors import DataError

WHOLE_NOTES_PART = "whole-notes"
PARTS = ("gold", WHOLE_NOTES_PART, "silver", "silver-confident", "bronze", "bronze-unfiltered")
# Parts cross-validation builds per fold from that fold's gold-trained student (``evals.cv``):
# silver it agrees with, and silver relabelled by weak supervision. A saved model cannot be
# trained on them, so they are never the default model's mix.
SILVER_AGREE, SILVER_WS = "silver-agree", "silver-ws"
FOLD_BUILT_PARTS = (SILVER_AGREE, SILVER_WS)
CAPPED_BRONZE = "bronze:"  # + N: at most N bronze sentences per target
SUBSET_SEED = 0  # one fixed shuffle, so smaller caps are subsets of larger ones
ROUND_TRIP_FILTER = "round_trip"


SILVER_MIN_CONFIDENCE = 0.5  # the labeller over-labels below it (tasks/ad_signs/data/README.md)


@dataclass(frozen=True)
class MixSources:
    """Where a mix's parts come from; ``for_task`` gives a task's files."""

    gold_dir: Path
    silver: Path
    bronze: Path
    silver_min_confidence: float = SILVER_MIN_CONFIDENCE
    rules: Path | None = None  # the task's rule list (hybrid mixes)

    @classmethod
    def for_task(cls, task: Any, **overrides: Any) -> MixSources:
        """The task's gold folder and silver/bronze sets; ``overrides`` replace any of them (None = keep)."""
        values = {"gold_dir": task.gold_dir, "silver": task.silver, "bronze": task.bronze,
                  "rules": getattr(task, "rules_path", None)}  # fmt: skip
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


HYBRID_SUFFIX = "+rules"  # ``gold+bronze+rules``: the mix's student stacked with the task's rule list



def rejected_path(bronze: Path | str) -> Path:
    """Where a bronze set's rejected ids are kept: ``bronze.jsonl`` -> ``bronze.jsonl.rejected.jsonl``."""
    return side_path(Path(bronze), "rejected.jsonl")


def rejected_ids(bronze: Path | str) -> set[str]:
    """Ids of bronze sentences a reviewer rejected (empty when nothing was reviewed)."""
    path = rejected_path(bronze)
    if not path.exists():
        return set()
    return {obj["id"] for _, obj in iter_jsonl(path) if isinstance(obj, dict) and isinstance(obj.get("id"), str)}


def split_hybrid(spec: str) -> tuple[str, bool]:
    """``"gold+bronze+rules"`` -> ("gold+bronze", True); a plain mix -> (mix, False)."""
    if spec.endswith(HYBRID_SUFFIX):
        return spec[: -len(HYBRID_SUFFIX)], True
    return spec, False


def best_mix(summary: dict[str, Any]) -> str | None:
    """The best mix of a cross-validation summary (``evals.cv``): the best mean of micro and
    macro F1 out of fold; cross-validation decides, never test.
    A hybrid (``MIX+rules``, the mix's student stacked with the rule list) is a candidate too.
    Systems trained with a changed budget (``mix@field=value``) compare recipes, not mixes,
    and are not candidates: the default model is trained with the default budget. Nor are
    systems with a part only cross-validation can build (``FOLD_BUILT_PARTS``).
    With a whole-note view (``summary["whole_view"]``: the systems scored out of fold on every
    sentence of the pool's whole notes, mostly NONE), a system's score is the mean of the two
    sets' means: the enriched pool alone favours a student that adds positives, which whole notes
    (what a user has) pay for in precision. If the view lacks a candidate, every candidate is
    ranked on the enriched pool alone, so no two are compared on different measures.
    """
    systems = [
        s for s in summary.get("systems", [])
        if s.get("kind") in ("mix", "hybrid") and "@" not in s["system"]
        and not set(split_hybrid(s["system"])[0].split("+")) & set(FOLD_BUILT_PARTS)
    ]  # fmt: skip
    whole = {s["system"]: s for s in (summary.get("whole_view") or {}).get("systems", [])}
    both_sets = bool(whole) and all(s["system"] in whole for s in systems)

    def score(row: dict[str, Any]) -> float:
        enriched = (row["micro_f1"][0] + row["macro_f1"][0]) / 2
        if not both_sets:
            return enriched
        other = whole[row["system"]]
        return (enriched + (other["micro_f1"][0] + other["macro_f1"][0]) / 2) / 2

    return max(systems, key=score)["system"] if systems else None


def parse_mix(spec: str, extra_parts: tuple[str, ...] = ()) -> tuple[str, ...]:
    """``"gold+bronze"`` -> ``("gold", "bronze")``; unknown or repeated parts are an error.

    ``extra_parts`` are parts a caller builds itself (cross-validation's ``silver-agree`` and ``silver-ws``).
    """
    parts = tuple(p.strip() for p in spec.split("+") if p.strip())
    known = PARTS + extra_parts
    unknown = [p for p in parts if p not in known and bronze_cap(p) is None]
    if not parts or unknown:
        raise DataError(f"unknown mix part(s) {unknown or [spec]}; use parts {known} or bronze:N joined by '+'")
    if len({"bronze" if bronze_cap(p) else p for p in parts}) != len(parts):
        raise DataError(f"mix {spec!r} names a part twice")
    return parts


def bronze_cap(part: str) -> int | None:
    """N of a ``bronze:N`` part (N >= 1), else None."""
    if not part.startswith(CAPPED_BRONZE):
        return None
    value = part[len(CAPPED_BRONZE) :]
    return int(value) if value.isdigit() and int(value) > 0 else None


def load_mix(spec: str, taxonomy: Taxonomy, sources: MixSources) -> list[Record]:
    """The training records of a mix, in part order."""
    records: list[Record] = []
    for part in parse_mix(spec):
        records.extend(load_part(part, taxonomy, sources))
    return records


def load_part(part: str, taxonomy: Taxonomy, sources: MixSources) -> list[Record]:
    if part == "gold":
        return load_gold(sources.gold_dir, taxonomy, splits=("train",))["train"]
    if part == WHOLE_NOTES_PART:
        return whole_notes_part(sources.gold_dir, taxonomy, ("train",))
    if part in ("silver", "silver-confident"):
        records = _read(sources.silver, taxonomy, "silver")
        if part == "silver-confident":
            records = [r for r in records if _confidence(r) >= sources.silver_min_confidence]
        return records
    if part == "bronze":
        return _read_bronze(sources.bronze, taxonomy)
    if part == "bronze-unfiltered":
        return bronze_without_round_trip(sources.bronze, taxonomy)
    cap = bronze_cap(part)
    if cap is not None:
        return capped_bronze(_read_bronze(sources.bronze, taxonomy), cap)
    raise DataError(f"unknown mix part {part!r}")


def whole_notes_part(gold_dir: Path, taxonomy: Taxonomy, splits: tuple[str, ...]) -> list[Record]:
    """The ``whole-notes`` part: the sentences the whole notes of gold ``splits`` add to those splits."""
    path = Path(gold_dir) / WHOLE_NOTES_FILES["train"]
    if not path.exists():  # the training ones must be there; dev ones only join them in cross-validation
        raise DataError(f"no whole training notes here, so no {WHOLE_NOTES_PART!r} part", path=path)
    return whole_note_extras(gold_dir, taxonomy, load_gold(gold_dir, taxonomy, splits=splits))


def _read(path: Path, taxonomy: Taxonomy, what: str) -> list[Record]:
    if not Path(path).exists():
        raise DataError(f"no {what} set here; make it first (make {what})", path=path)
    return read_records(path, taxonomy)


def _read_bronze(path: Path, taxonomy: Taxonomy) -> list[Record]:
    """Bronze less the sentences a reviewer rejected (``clinsynth review import``)."""
    rejected = rejected_ids(path)
    return [r for r in _read(path, taxonomy, "bronze") if r.id not in rejected]


def _confidence(record: Record) -> float:
    confidence = record.provenance.confidence if record.provenance else None
    return confidence if confidence is not None else 0.0


def bronze_target(record: Record) -> str:
    attributes = (record.provenance.attributes or {}) if record.provenance else {}
    return attributes.get("target") or (record.labels[0] if record.labels else NONE_LABEL)


def capped_bronze(records: list[Record], cap: int) -> list[Record]:
    """At most ``cap`` records per bronze target, in file order; which ones is a fixed shuffle."""
    by_target: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_target[bronze_target(record)].append(record)
    keep: set[str] = set()
    for target in sorted(by_target):
        pool = sorted(by_target[target], key=lambda r: r.id)
        random.Random(f"{SUBSET_SEED}:{target}").shuffle(pool)
        keep.update(r.id for r in pool[:cap])
    return [r for r in records if r.id in keep]


def bronze_without_round_trip(path: Path, taxonomy: Taxonomy, seed: int = 0) -> list[Record]:
    """Kept bronze plus round-trip drops, sampled to the kept count per target."""
    kept = _read_bronze(path, taxonomy)  # rejected ones leave both mixes, so only the filter differs
    dropped_path = side_path(Path(path), "dropped.jsonl")
    pool: dict[str, list[Record]] = defaultdict(list)
    for record in kept:
        pool[bronze_target(record)].append(record)
    wanted = {target: len(records) for target, records in pool.items()}
    if dropped_path.exists():
        for line, row in iter_jsonl(dropped_path):
            if row.get("filter") != ROUND_TRIP_FILTER:
                continue
            if "labels" not in row:
                raise DataError(
                    "missing; rerun `make bronze` (it rewrites the side files without new LM calls)",
                    path=dropped_path,
                    line=line,
                    field="labels",
                )
            unknown = taxonomy.unknown_labels(row["labels"])
            if unknown:
                raise DataError(f"unknown label(s) {unknown}", path=dropped_path, line=line, field="labels")
            pool[row["target"]].append(
                Record(id=row["id"], text=row["text"], labels=taxonomy.canonical(row["labels"]), source="bronze")
            )
    rng = random.Random(seed)
    out: list[Record] = []
    for target in sorted(pool):
        candidates = pool[target]
        out.extend(rng.sample(candidates, min(len(candidates), wanted.get(target, 0))))
    return out

"""Write the SDoH annotation passes as Label Studio JSON exports, one per gold split.

The annotators worked on ``tasks_*.json`` (``clinsynth review export`` of the LLM
pre-annotated candidates, in batches as the labelling went on) and recorded their
choices as JSONL (``{"id", "labels"}`` a line); this script puts them into the export format Label Studio writes
(``annotations[].result[].value.choices``, ``completed_by``, ``ground_truth`` for the
adjudicated label set), so ``clinsynth review import`` reads them exactly as it would
read a real export. Splits are by note (seeded), 60/20/20.

    python tasks/sdoh/annotation/build_exports.py
    clinsynth review import --task tasks/sdoh --input tasks/sdoh/annotation/export_train.json --split train
    (same for dev and test)
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLIT_SHARES = (("train", 0.6), ("dev", 0.2), ("test", 0.2))
SEED = 13
# (file, annotator id, email): first pass (three annotators, a batch each), second pass, adjudication.
FIRST_PASS = (
    ("pass1_a.jsonl", 1, "annotator-1a"),
    ("pass1_b.jsonl", 2, "annotator-1b"),
    ("pass1_c.jsonl", 5, "annotator-1c"),
)
SECOND_PASS = ("pass2.jsonl", 3, "annotator-2")
ADJUDICATION = ("adjudication.jsonl", 4, "adjudicator")


def read_labels(name: str) -> dict[str, list[str]]:
    path = HERE / name
    if not path.exists():
        return {}
    out = {}
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            obj = json.loads(line)
            if obj["id"] in out:
                raise SystemExit(f"{path}:{line_no}: id {obj['id']!r} twice")
            out[obj["id"]] = list(obj["labels"])
    return out


def annotation(labels: list[str], user: int, email: str, number: int, ground_truth: bool = False) -> dict:
    result = [{"from_name": "labels", "to_name": "text", "type": "choices", "value": {"choices": labels}}]
    return {
        "id": number,
        "completed_by": {"id": user, "email": email},
        "was_cancelled": False,
        "ground_truth": ground_truth,
        "result": result if labels else [],
    }


def note_splits(tasks: list[dict]) -> dict[str, str]:
    notes = sorted({t["data"]["note_id"] for t in tasks})
    random.Random(SEED).shuffle(notes)
    out, start = {}, 0
    for k, (split, share) in enumerate(SPLIT_SHARES):
        end = len(notes) if k == len(SPLIT_SHARES) - 1 else start + round(share * len(notes))
        out.update({n: split for n in notes[start:end]})
        start = end
    return out


def main() -> None:
    tasks = [t for path in sorted(HERE.glob("tasks_*.json")) for t in json.loads(path.read_text(encoding="utf-8"))]
    first: dict[str, tuple[list[str], int, str]] = {}
    for name, user, email in FIRST_PASS:
        for sid, labels in read_labels(name).items():
            first[sid] = (labels, user, email)
    second = read_labels(SECOND_PASS[0])
    adjudicated = read_labels(ADJUDICATION[0])
    split_of = note_splits(tasks)
    exports: dict[str, list[dict]] = {s: [] for s, _ in SPLIT_SHARES}
    number = 0
    missing = [t["data"]["id"] for t in tasks if t["data"]["id"] not in first]
    if missing:
        raise SystemExit(f"{len(missing)} tasks have no first-pass labels, e.g. {missing[:5]}")
    for k, task in enumerate(tasks, 1):
        sid = task["data"]["id"]
        labels, user, email = first[sid]
        anns = [annotation(labels, user, email, number := number + 1)]
        if sid in second:
            anns.append(annotation(second[sid], SECOND_PASS[1], SECOND_PASS[2], number := number + 1))
            if sorted(second[sid]) != sorted(labels):
                if sid not in adjudicated:
                    raise SystemExit(f"{sid}: the passes differ and there is no adjudication")
                anns.append(annotation(adjudicated[sid], ADJUDICATION[1], ADJUDICATION[2], number := number + 1, True))
        exports[split_of[task["data"]["note_id"]]].append({**task, "id": k, "annotations": anns})
    for split, rows in exports.items():
        (HERE / f"export_{split}.json").write_text(json.dumps(rows, ensure_ascii=False, indent=1) + "\n")
        print(f"{split}: {len(rows)} tasks, {len({r['data']['note_id'] for r in rows})} notes")


if __name__ == "__main__":
    main()

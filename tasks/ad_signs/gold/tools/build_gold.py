"""Build the gold splits from the annotation passes: adjudicate, measure agreement, split by note.

Inputs (``tasks/ad_signs/gold/work/``): ``candidates.jsonl`` (selection), ``labels/A*.jsonl`` (first
pass, every sentence), ``labels/B*.jsonl`` (independent second pass on a subset),
``adjudication.jsonl`` (final labels and the rule applied, for every disagreement).
Outputs: ``tasks/ad_signs/gold/{train,dev,test}.jsonl``, ``tasks/ad_signs/gold/agreement.json`` and
``tasks/ad_signs/gold/stats.json``.

Run from the project root: ``python tasks/ad_signs/gold/tools/build_gold.py``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

from sklearn.metrics import cohen_kappa_score

from clinsynth.data.corpus import iter_sentences
from clinsynth.data.gold import SPLITS, load_gold
from clinsynth.data.records import Record, write_records
from clinsynth.data.task import BUNDLED_TASK, load_task

WORK = Path("tasks/ad_signs/gold/work")
GOLD = Path("tasks/ad_signs/gold")
SPLIT_SHARES = {"train": 0.6, "dev": 0.2, "test": 0.2}
SEED = 2023


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _passes(prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted((WORK / "labels").glob(f"{prefix}*.jsonl")):
        for row in _read(path):
            assert row["id"] not in out, f"{path}: {row['id']} labelled twice in pass {prefix}"
            out[row["id"]] = row["labels"]
    return out


def agreement(first: dict[str, list[str]], second: dict[str, list[str]], names: tuple[str, ...]) -> dict:
    ids = sorted(second)
    report = {
        "n_sentences": len(ids),
        "exact_match": sum(set(first[i]) == set(second[i]) for i in ids) / len(ids),
        "binary_kappa": cohen_kappa_score([bool(first[i]) for i in ids], [bool(second[i]) for i in ids]),
        "per_category": {},
    }
    for name in names:
        a = [name in first[i] for i in ids]
        b = [name in second[i] for i in ids]
        kappa = cohen_kappa_score(a, b) if any(a) or any(b) else None
        report["per_category"][name] = {"first_pass": sum(a), "second_pass": sum(b), "kappa": kappa}
    return report


def split_notes(labels_by_note: dict[str, list[list[str]]], names: tuple[str, ...]) -> dict[str, str]:
    """Assign notes to splits (~60/20/20 of notes) so every category present in >= 2 notes
    has examples in train and dev (and in test when it spans >= 3 notes)."""
    notes = sorted(labels_by_note)
    notes_with = {n: {note for note in notes if any(n in labels for labels in labels_by_note[note])} for n in names}
    for attempt in range(10_000):
        rng = random.Random(SEED + attempt)
        order = notes[:]
        rng.shuffle(order)
        cut1, cut2 = round(len(order) * 0.6), round(len(order) * 0.8)
        assignment = {note: ("train" if i < cut1 else "dev" if i < cut2 else "test") for i, note in enumerate(order)}
        ok = True
        for holders in notes_with.values():
            present = {assignment[n] for n in holders}
            need = {"train", "dev"} if len(holders) >= 2 else set()
            if len(holders) >= 3:
                need.add("test")
            ok &= need <= present
        if ok:
            print(f"split found at attempt {attempt} (seed {SEED + attempt})")
            return assignment
    raise SystemExit("no split satisfies the category constraints")


def main() -> None:
    taxonomy = load_task(BUNDLED_TASK).taxonomy
    candidates = {c["id"]: c for c in _read(WORK / "candidates.jsonl")}
    first, second = _passes("A"), _passes("B")
    adjudicated = {row["id"]: row for row in _read(WORK / "adjudication.jsonl")}
    assert set(first) == set(candidates), "first pass must cover every candidate"
    assert set(second) <= set(first)

    final: dict[str, list[str]] = {}
    for sid in candidates:
        if sid in second and set(second[sid]) != set(first[sid]):
            assert sid in adjudicated, f"{sid}: disagreement without adjudication"
            final[sid] = adjudicated[sid]["labels"]
        else:
            final[sid] = first[sid]

    corpus = {s.id: s for s in iter_sentences(load_task(BUNDLED_TASK).corpus) if s.id in candidates}
    labels_by_note: dict[str, list[list[str]]] = {}
    for sid, cand in candidates.items():
        sentence = corpus[sid]
        # Annotators saw the sentence text; the corpus text must still be that sentence.
        assert sentence.text.endswith(cand["text"]), f"{sid}: corpus text changed"
        labels_by_note.setdefault(sentence.note_id, []).append(final[sid])

    assignment = split_notes(labels_by_note, taxonomy.names)
    by_split: dict[str, list[Record]] = {s: [] for s in SPLITS}
    for sid in sorted(candidates, key=lambda i: (int(i.split("-")[1]), int(i.split("-s")[1]))):
        sentence = corpus[sid]
        split = assignment[sentence.note_id]
        by_split[split].append(
            Record(
                id=sid,
                text=sentence.text,
                labels=taxonomy.canonical(final[sid]),
                source="gold",
                note_id=sentence.note_id,
                split=split,
            )
        )
    for split, records in by_split.items():
        write_records(GOLD / f"{split}.jsonl", records)
    load_gold(GOLD, taxonomy)  # validate what was written

    agree = agreement(first, second, taxonomy.names)
    agree["disagreements_adjudicated"] = sum(1 for i in second if set(second[i]) != set(first[i]))
    (GOLD / "agreement.json").write_text(json.dumps(agree, indent=2) + "\n")

    stats: dict = {"per_split": {}, "strata": Counter(c["stratum"] for c in candidates.values())}
    for split, records in by_split.items():
        counts = Counter(label for r in records for label in r.labels)
        stats["per_split"][split] = {
            "notes": len({r.note_id for r in records}),
            "sentences": len(records),
            "positive": sum(1 for r in records if r.labels),
            "none": sum(1 for r in records if not r.labels),
            "multi_label": sum(1 for r in records if len(r.labels) > 1),
            "per_category": {n: counts.get(n, 0) for n in taxonomy.names},
        }
    (GOLD / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (GOLD / "README.md").write_text(render_card(stats, agree, taxonomy.names))
    total = sum(s["sentences"] for s in stats["per_split"].values())
    print(
        f"{total} gold sentences: "
        + ", ".join(
            f"{k} {v['sentences']} ({v['notes']} notes, {v['positive']} positive)"
            for k, v in stats["per_split"].items()
        )
    )
    print(f"binary kappa {agree['binary_kappa']:.3f} on {agree['n_sentences']} doubly annotated sentences")


CARD_INTRO = """# Gold set: AD signs in MTSamples sentences

Expert-style annotations of real, de-identified clinical sentences from the project's public
corpus (MTSamples, CC0; see `data/corpus/README.md`), labelled with the 9-category taxonomy
of `tasks/ad_signs/taxonomy.yaml` (guideline: `tasks/ad_signs/guideline.md`). It
stands in for the expert-annotated EHR sentences of Li, Wang & Yu (2023) and anchors prompt
compilation (dev) and every measurement (test).

**Sensitivity: private.** The text is public, but the code treats gold as it would a
hospital's annotated EHR: records carry `"source": "gold"`, files under `tasks/ad_signs/gold/` are
private, and the privacy gate refuses to send them to a remote LLM unless that endpoint is
approved in `clinsynth.toml` (see the project README).

Files: `train.jsonl`, `dev.jsonl`, `test.jsonl` (record schema: `id`, `text`, `labels`,
`source: gold`, `note_id`, `split`; `labels: []` = NONE), `agreement.json`, `stats.json`;
`work/` holds the selection, every annotation pass, and the adjudications. Sentence ids are
those of `clinsynth.data.corpus` (`mts-<note>-s<index>`), so every record can be traced back to
its note. Rebuild with `python tasks/ad_signs/gold/tools/build_gold.py`; validate with
`clinsynth.data.gold.load_gold()` (also run by the tests).
"""

CARD_METHOD = """## How sentences were selected

`tasks/ad_signs/gold/tools/select_candidates.py` draws candidates from the corpus (cue words only pick
*which* sentences are read; they never decide a label):

| stratum | sentences | what |
| --- | --- | --- |
{strata_rows}

`cue`: sentences with a cue of any category in notes likely to document AD-related signs
(neurology, psychiatry, rehab, speech-language, hospice, discharge, consult and office
notes that mention dementia, cognition, confusion, nursing homes, Aricept...), at most 18 per
note. `rare`: every corpus sentence with a cue of the rare categories (dementia drugs,
cognitive tests, wandering/driving/safety, reports by family). `hard_negative`: negated
mentions, normal mental-status findings, family history of dementia. `random`: random
sentences of other notes. `ad_note`: a second round over the 37 notes centred on dementia or
cognitive decline, adding every remaining sentence with a cue of any category or of daily
living, safety and care (the first round had found only 3 SAFETY_CONCERNS sentences).

## How they were annotated

Each sentence was read against the guideline and labelled by hand (a label set; empty =
NONE), with the note's section header shown. No keyword script, model or classifier
decided a label. The first pass covers every sentence (`work/labels/A*.jsonl`, seven
annotators, one batch each). A second, independent pass (`work/labels/B*.jsonl`, three
annotators who never saw the first pass) covers a random subset of {n_double} sentences.
Disagreements were adjudicated one by one against the guideline; each decision and the rule
it applies is in `work/adjudication.jsonl`.
"""

CARD_RULES = """## Adjudication rules added to the guideline

These decide cases the guideline leaves open; each came from a real disagreement.

1. An inability to do a task with no help or supervision stated is the deficit
   (COGNITIVE_IMPAIRMENT), not REQUIRING_ASSISTANCE.
2. A sentence that places the patient in a nursing home (e.g. "the list from the nursing
   home") documents residence there: REQUIRING_ASSISTANCE.
3. Unsafe behaviour from a psychiatric cause (suicidality, medication refusal) is not
   SAFETY_CONCERNS, which needs a risk arising from cognitive decline.
4. A referral for, or administration of, a mental status evaluation is COGNITIVE_TESTING,
   whatever its purpose (guideline rule 2); a progress report naming the domains evaluated,
   with no deficit stated, is COGNITIVE_TESTING only.
5. A relative's worry that is not about cognition, behaviour or function (job loss from
   absenteeism in an alcohol history) is NONE.
6. A motor freezing episode in parkinsonism is PHYSIOLOGICAL_CHANGES (motor slowing).
7. Dementia that prevents safe self-monitoring, leading to admission for supervision:
   REQUIRING_ASSISTANCE + SAFETY_CONCERNS (+ DIAGNOSIS).
8. A memory gap only implied by the narrative of an event ("her last memory was...") is not
   an affirmed deficit: NONE.
9. Help with a leisure task (a game) is not help with daily activities: the need documents
   the deficit (rule 1).
10. Withdrawal from nearly all activity with no help stated ("activities of daily living are
    practically zero", lying on the floor all day) is apathy: NEUROPSYCHIATRIC_SYMPTOMS.
"""

CARD_LIMITS = """## Known limits

- **Annotators.** The passes were made by independent annotators working from the guideline
  alone, not by clinicians; they share training and habits, so the kappa above likely
  overstates the agreement two clinicians would reach. Treat it as a check of the
  guideline's clarity and of the passes' consistency, not as clinical validation.
- **Rare categories.** The whole corpus holds few SAFETY_CONCERNS and TREATMENT sentences:
  every one found is included ({n_safety} SAFETY_CONCERNS, {n_treatment} TREATMENT). Per-category
  scores on them are very noisy; report them, but do not tune on them.
- **Distribution.** Sentences were selected, not sampled: positives are far more frequent
  here ({pos_share:.0%}) than in a real note stream, and MTSamples notes are transcription
  samples, not EHR notes. Precision measured here overstates precision on raw notes.
- **Selection round 1** was drawn before the corpus reader kept inline all-caps labels
  ("NEURO: Alert and oriented x3."); ids are unchanged, and the committed texts are those of
  the current reader (52 sentences gained their inline label; their labels still apply).
- Sentences are labelled alone (with the section header); context from neighbouring
  sentences (who "she" is, what "this" refers to) was not used.
"""


def render_card(stats: dict, agree: dict, names: tuple[str, ...]) -> str:
    splits = stats["per_split"]
    lines = [CARD_INTRO, "## Counts", ""]
    lines.append("| | " + " | ".join(SPLITS) + " | all |")
    lines.append("| --- |" + " ---: |" * (len(SPLITS) + 1))

    def row(label: str, values: list[int]) -> str:
        return f"| {label} | " + " | ".join(str(v) for v in values) + f" | {sum(values)} |"

    for key, label in (
        ("notes", "notes"),
        ("sentences", "sentences"),
        ("positive", "with >= 1 category"),
        ("none", "NONE"),
        ("multi_label", "with >= 2 categories"),
    ):
        lines.append(row(label, [splits[s][key] for s in SPLITS]))
    for name in names:
        lines.append(row(name, [splits[s]["per_category"][name] for s in SPLITS]))
    strata_rows = "\n".join(f"| {k} | {v} | {_STRATUM_DESC[k]} |" for k, v in stats["strata"].items())
    lines += [
        "",
        "Splits are by note, never by sentence (about 60/20/20 of notes), drawn with a fixed seed "
        "until every category has examples in train and dev (and in test where it spans three notes or "
        "more).",
        "",
    ]
    lines.append(CARD_METHOD.format(strata_rows=strata_rows, n_double=agree["n_sentences"]))
    lines += [
        "## Agreement",
        "",
        f"On the {agree['n_sentences']} doubly annotated sentences: binary (any category vs NONE) "
        f"Cohen's kappa **{agree['binary_kappa']:.3f}**; exact label-set match "
        f"{agree['exact_match']:.1%}; {agree['disagreements_adjudicated']} disagreements adjudicated.",
        "",
        "| category | first pass | second pass | kappa |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        c = agree["per_category"][name]
        kappa = "n/a" if c["kappa"] is None else f"{c['kappa']:.3f}"
        lines.append(f"| {name} | {c['first_pass']} | {c['second_pass']} | {kappa} |")
    lines += ["", CARD_RULES]
    total = sum(splits[s]["sentences"] for s in SPLITS)
    positives = sum(splits[s]["positive"] for s in SPLITS)
    lines.append(
        CARD_LIMITS.format(
            n_safety=sum(splits[s]["per_category"]["SAFETY_CONCERNS"] for s in SPLITS),
            n_treatment=sum(splits[s]["per_category"]["TREATMENT"] for s in SPLITS),
            pos_share=positives / total,
        )
    )
    return "\n".join(lines)


_STRATUM_DESC = {
    "cue": "category cues in AD-relevant notes",
    "rare": "cues of rare categories, whole corpus",
    "hard_negative": "negations, normal findings, family history",
    "random": "random sentences of other notes",
    "ad_note": "second round: notes centred on dementia",
}


if __name__ == "__main__":
    main()

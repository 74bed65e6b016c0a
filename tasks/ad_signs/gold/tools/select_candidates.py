"""Select the candidate sentences of the gold set from the project's corpus.

Selection only decides *which* sentences are annotated; cue words here never decide a
label (every candidate is read and labelled by hand against the guideline). Strata:

- ``cue``: sentences of notes likely to document AD-related signs (neurology, psychiatry,
  rehab, speech-language, hospice, geriatric/nursing-home notes, or any note mentioning
  dementia or cognition) that carry a cue of any category;
- ``rare``: every sentence in the corpus with a cue of the rare categories (treatment,
  cognitive testing, safety, report by others), kept whole because they are scarce;
- ``hard_negative``: negated mentions, normal mental-status findings, family history;
- ``random``: random sentences of other notes;
- ``ad_note``: in the notes centred on dementia or cognitive decline, every remaining
  sentence with a cue of any category or of daily living, safety and care (added in a
  second round: the first round found only 3 SAFETY_CONCERNS sentences).

Run from the project root: ``python tasks/ad_signs/gold/tools/select_candidates.py``. The committed
``candidates.jsonl`` keeps the first round exactly as annotated: it was drawn before the
corpus reader stopped stripping inline all-caps labels ("NEURO: Alert and oriented"), which
left every sentence id the same but shifts which sentences the seeded draw picks, so the
second round (``ad_note``) is appended to the existing file rather than redrawn.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from clinsynth.data.corpus import iter_sentences, note_sentences, read_notes
from clinsynth.data.task import BUNDLED_TASK, load_task

SEED = 13
OUT = Path("tasks/ad_signs/gold/work/candidates.jsonl")
MAX_PER_NOTE = 18
N_CUE, N_HARD, N_RANDOM = 470, 130, 130

RELEVANT_SPECIALTIES = re.compile(
    r"Neurology|Psychiatry|Rehab|Speech|Hospice|Sleep|Discharge|Consult|SOAP|Office|General Medicine",
)
RELEVANT_NOTE = re.compile(
    r"dementia|alzheimer|cognitive|memory loss|confusion|nursing home|mini-mental|MMSE|aricept|"
    r"namenda|forgetful|disoriented|hallucinat|assisted living|parkinson",
    re.I,
)
CUES = re.compile(
    r"memory|forget|confus|disorient|cognit|dementia|alzheimer|word.finding|aphasi|recall|"
    r"attention|judg(e)?ment|executive|mental status|oriented|depress|anxi|agitat|hallucinat|"
    r"delusion|paranoi|irritab|apath|insomnia|sleep|aggress|sundown|personality|combative|"
    r"gait|falls?\b|fell\b|incontinen|weight loss|swallow|dysphagia|hearing|shuffl|parkinson|"
    r"tremor|balance|seizure|nursing home|assisted living|assist|help with|dependent|"
    r"supervision|caregiver|ADLs?\b|atrophy|encephalopathy|neurocognitive|MCI\b",
    re.I,
)
RARE = re.compile(
    r"aricept|donepezil|exelon|rivastigmine|galantamine|razadyne|namenda|memantine|"
    r"cognitive.linguistic|cognitive (rehab|therapy)|memory care|MMSE|mini.mental|MoCA|SLUMS|"
    r"clock draw|trail making|neuropsych|folstein|wander|got lost|get lost|getting lost|"
    r"left alone|stove|unsafe|car accident|driving|scam|"
    r"(wife|husband|daughter|son|family|caregiver|friend)s? (has |have )?"
    r"(noted|noticed|report|state|says|feel|is concerned|are concerned|worr)",
    re.I,
)
AD_NOTE = re.compile(r"dementia|alzheimer|memory loss|cognitive impairment", re.I)
DAILY_LIFE = re.compile(
    r"safety|wander|lost|accident|alone|stove|driv|scam|financ|error|unsafe|fall|caring|care of|help|"
    r"lives|living",
    re.I,
)
HARD_NEGATIVE = re.compile(
    r"alert and oriented|oriented (x|times)|memory (is )?intact|no (memory|confusion|"
    r"hallucination|depression|anxiety|dementia|cognitive)|denies (any )?(memory|confusion|"
    r"depression|anxiety|hallucination|falls)|family history.*(dementia|alzheimer|parkinson)|"
    r"(mother|father|sister|brother) (had|has|with) (dementia|alzheimer)|mental status.*normal|"
    r"cognition (is )?(normal|intact)",
    re.I,
)


def main() -> None:
    rng = random.Random(SEED)
    notes = read_notes(load_task(BUNDLED_TASK).corpus)
    relevant = {
        n.note_id
        for n in notes
        if any(RELEVANT_SPECIALTIES.search(s) for s in n.specialties)
        and RELEVANT_NOTE.search(n.text)
        or re.search(r"dementia|alzheimer", n.text, re.I)
    }
    sentences = list(iter_sentences(notes=notes))
    chosen: dict[str, tuple[object, str]] = {}

    for s in sentences:
        if RARE.search(s.text):
            chosen[s.id] = (s, "rare")
    hard = [s for s in sentences if s.id not in chosen and HARD_NEGATIVE.search(s.text)]
    cue = [
        s
        for s in sentences
        if s.note_id in relevant and s.id not in chosen and CUES.search(s.text) and not HARD_NEGATIVE.search(s.text)
    ]
    rng.shuffle(cue)
    per_note: dict[str, int] = {}
    for s in cue:
        if len([v for v in chosen.values() if v[1] == "cue"]) >= N_CUE:
            break
        if per_note.get(s.note_id, 0) < MAX_PER_NOTE:
            per_note[s.note_id] = per_note.get(s.note_id, 0) + 1
            chosen[s.id] = (s, "cue")
    for s in rng.sample(hard, min(N_HARD, len(hard))):
        chosen[s.id] = (s, "hard_negative")
    others = [s for s in sentences if s.note_id not in relevant and s.id not in chosen and len(s.text) > 20]
    for s in rng.sample(others, N_RANDOM):
        chosen[s.id] = (s, "random")
    if OUT.exists():  # keep the annotated first round as it is (see the module docstring)
        kept = [json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]
        by_id = {s.id: s for s in sentences}
        chosen = {row["id"]: (by_id[row["id"]], row["stratum"]) for row in kept}
    for note in notes:
        if AD_NOTE.search(note.text):
            for s in note_sentences(note):
                if s.id not in chosen and (CUES.search(s.text) or RARE.search(s.text) or DAILY_LIFE.search(s.text)):
                    chosen[s.id] = (s, "ad_note")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(chosen.values(), key=lambda v: (int(v[0].note_id.split("-")[1]), v[0].index))
    with OUT.open("w") as fh:
        for s, stratum in rows:
            fh.write(
                json.dumps({"id": s.id, "note_id": s.note_id, "section": s.section, "text": s.text, "stratum": stratum})
                + "\n"
            )
    counts: dict[str, int] = {}
    for _, stratum in rows:
        counts[stratum] = counts.get(stratum, 0) + 1
    print(f"{len(rows)} candidates from {len({s.note_id for s, _ in rows})} notes: {counts}")


if __name__ == "__main__":
    main()

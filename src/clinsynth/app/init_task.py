"""``clinsynth init DIR``: write a working template of a task folder for a user's own task.

The template is a small but genuine two-category task (SMOKING, ALCOHOL_USE) whose files
validate as they are: ``clinsynth.toml`` (every key, commented), ``taxonomy.yaml``, stub gold
splits under ``gold/`` and a README. Replace the taxonomy and gold with your own.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from clinsynth.data.fileio import atomic_write_text
from clinsynth.data.task import CONFIG_NAME
from clinsynth.errors import ClinsynthError

CATEGORIES = ("SMOKING", "ALCOHOL_USE")

# Stub gold, by split: (note id, sentence, labels). Every split has both categories and
# NONE; no note sits in two splits.
_GOLD: dict[str, list[tuple[str, str, list[str]]]] = {
    "train": [
        ("note-1", "She smokes one pack of cigarettes per day.", ["SMOKING"]),
        ("note-1", "Denies alcohol use.", []),
        ("note-2", "Former smoker, quit 10 years ago with a 20 pack-year history.", ["SMOKING"]),
        ("note-2", "He drinks three to four beers every night.", ["ALCOHOL_USE"]),
        ("note-3", "History of alcohol dependence, sober since 2015.", ["ALCOHOL_USE"]),
        ("note-3", "Abdomen is soft and nontender.", []),
        ("note-4", "Smokes half a pack a day and drinks wine with dinner.", ["SMOKING", "ALCOHOL_USE"]),
        ("note-4", "Her father smoked heavily and died of lung cancer.", []),
    ],
    "dev": [
        ("note-5", "Patient chews tobacco daily.", ["SMOKING"]),
        ("note-5", "Lungs are clear to auscultation bilaterally.", []),
        ("note-6", "Reports binge drinking on weekends.", ["ALCOHOL_USE"]),
        ("note-6", "He denies tobacco, alcohol or drug use.", []),
    ],
    "test": [
        ("note-7", "Current every-day smoker; counseled on cessation.", ["SMOKING"]),
        ("note-7", "Blood pressure is 128/82.", []),
        ("note-8", "Drinks about a six-pack on Fridays.", ["ALCOHOL_USE"]),
        ("note-8", "Never smoker.", []),
    ],
}

_EXAMPLE_SENTENCES = (
    "He has smoked two packs a day for 30 years.",
    "She drinks a bottle of wine most evenings.",
    "Denies tobacco or alcohol use.",
)


@dataclass
class InitResult:
    root: Path
    files: list[Path]
    next_commands: list[str]


def task_name(directory: Path) -> str:
    """The folder name made identifier-like: lower case, ``_`` for anything else, no leading digit."""
    name = re.sub(r"[^0-9a-z]+", "_", directory.resolve().name.lower()).strip("_")
    if not name:
        return "my_task"
    return f"task_{name}" if name[0].isdigit() else name


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string (ASCII, escaped) is a valid TOML basic string


def _config(name: str, title: str) -> str:
    sentences = "".join(f"    {_toml_str(s)},\n" for s in _EXAMPLE_SENTENCES)
    quick = ", ".join(_toml_str(c) for c in CATEGORIES)
    return f"""\
# A clinsynth task: everything a run needs. Every path is relative to this folder.
name = {_toml_str(name)}  # short id, used in file names and report titles
title = {_toml_str(title)}  # shown in model cards and reports
taxonomy = "taxonomy.yaml"  # categories + annotation guideline (replace with yours)
gold = "gold"  # train.jsonl, dev.jsonl, test.jsonl: your expert-labelled sentences (private)
# corpus: the public notes that silver data is labelled from. Left out, the bundled public
# MTSamples corpus is used. To use your own, point to a CSV (optionally .csv.gz) with the
# same columns: id, medical_specialty, transcription (one whole note a row), e.g.
# corpus = "my_notes.csv.gz"
silver = "data/silver.jsonl"  # LM-labelled public sentences (silver)
bronze = "data/bronze.jsonl"  # LM-written synthetic sentences (bronze)
compiled = "compiled"  # compiled DSPy programs (prompts optimised on gold train)
outputs = "outputs"  # models, runs and caches of this task
reports = "reports"  # reports and model cards

# The LM each role uses: 'local' is the embedded model; any litellm model string works
# (e.g. "openai/gpt-4o-mini"); add api_base for a self-hosted OpenAI-compatible server.
[lm.labeler]  # labels public sentences (silver)
model = "local"
# api_base = "http://127.0.0.1:8000/v1"

[lm.generator]  # writes synthetic sentences (bronze)
model = "local"
# api_base = "http://127.0.0.1:8000/v1"

[lm.prompt_model]  # proposes instructions while compiling programs
model = "local"
# api_base = "http://127.0.0.1:8000/v1"

[privacy]
# Remote endpoints allowed to receive private data (gold, your files, programs with gold
# demos), e.g. ["https://llm.my-hospital.example/v1", "azure/*"]. Local ones always are.
approved_endpoints = []
# Loopback URLs that forward to another machine (an SSH tunnel, a proxy): treated as remote.
remote_endpoints = []

[examples]
# Sentences labelled by the default model after training, as a quick look.
sentences = [
{sentences}]
# The categories `clinsynth run --quick` generates data for (names from taxonomy.yaml).
quick_categories = [{quick}]

# How `clinsynth run --regenerate`, `clinsynth label --silver` and `clinsynth generate`
# make this task's silver and bronze sets (the defaults are shown; uncomment to change).
[label]
# limit = 2000        # corpus sentences to label
# pool = 30000        # prefilter: score a random pool of this many corpus sentences
# negatives = 0.2     # prefilter: share of random other sentences

[generate]
# per_category = 50   # kept synthetic sentences wanted per category
# max_rounds = 3      # top-up rounds for categories short of their quota
"""


def _taxonomy(name: str, title: str) -> str:
    return f"""\
# The taxonomy: the annotation guideline in structured form. This is a TEMPLATE: replace
# the categories, rules and examples below with your own guideline. Check it with
#   clinsynth taxonomy --path taxonomy.yaml
# Category names are UPPER_SNAKE_CASE; NONE is reserved for the empty label set.
name: {json.dumps(name)}
title: {json.dumps(title)}
unit: >-
  One sentence (or sentence-like fragment) of a clinical note. Labels: a set of the
  categories below; the empty set means the sentence documents neither ("NONE"). Give
  both categories when the sentence states both.
general_rules:
  - >-
    About the patient, affirmed. The use must be affirmed for the patient. Negated use
    ("denies smoking", "never smoker", "no alcohol") is NONE, as is use by someone else
    ("father smoked").
  - >-
    History counts. Past use ("former smoker, quit in 2010", "history of alcohol abuse,
    sober 5 years") is labelled like current use.
  - >-
    Label what the sentence states, not what it implies: a diagnosis such as "COPD" or
    "cirrhosis" alone is NONE.
categories:
  - name: SMOKING
    definition: >-
      Tobacco use by the patient, current or past: cigarettes, cigars, pipes, chewing
      tobacco or snuff, e-cigarettes or vaping; amounts, pack-years, quitting.
    include:
      - "Former use and quit dates (\\"quit smoking 5 years ago\\")."
      - "Counselling given to a current smoker."
    exclude:
      - "Denied or never use (\\"Never smoker.\\") is NONE."
      - "Smoking of family members or second-hand exposure only is NONE."
    generation:  # hints for label-to-data; not part of the labelling guideline
      aspects:
        - "packs per day or pack-years"
        - "former smoker with a quit date"
        - "cigars or pipe"
        - "chewing tobacco or snuff"
        - "vaping or e-cigarettes"
        - "smoking cessation counselling"
    examples:
      - text: "He smoked one pack a day for 20 years and quit in 2015."
        labels: [SMOKING]
      - text: "Denies tobacco use."
        labels: []
  - name: ALCOHOL_USE
    definition: >-
      Alcohol consumption by the patient, current or past, at any level: social drinking,
      amounts, binge drinking, alcohol abuse or dependence, withdrawal, abstinence after
      past use.
    include:
      - "Occasional or social drinking (\\"drinks socially\\")."
      - "Past heavy use now in remission."
    exclude:
      - "Denied use (\\"No alcohol.\\") is NONE."
      - "Alcohol-related diagnoses without stated drinking (\\"cirrhosis\\") are NONE."
    generation:  # hints for label-to-data; not part of the labelling guideline
      aspects:
        - "drinks per week"
        - "social drinking"
        - "binge drinking"
        - "alcohol dependence or withdrawal"
        - "sober after past heavy use"
    examples:
      - text: "She drinks two glasses of wine a night."
        labels: [ALCOHOL_USE]
      - text: "Smokes cigars and drinks beer on weekends."
        labels: [SMOKING, ALCOHOL_USE]
"""


def _gold_lines(split: str) -> str:
    lines = []
    counts: dict[str, int] = {}
    for note_id, text, labels in _GOLD[split]:
        index = counts.get(note_id, 0)
        counts[note_id] = index + 1
        record = {
            "id": f"{note_id}-s{index}",
            "text": text,
            "labels": labels,
            "source": "gold",
            "note_id": note_id,
            "split": split,
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    return "".join(lines)


_GOLD_README = """\
# Gold: expert-labelled sentences (private)

The files here are PLACEHOLDERS. Replace them with sentences of your own notes, labelled
by experts following `../taxonomy.yaml`.

- `train.jsonl`: demos and training data; `dev.jsonl`: model selection; `test.jsonl`: the final score.
- One JSON object a line:

      {"id": "note-1-s0", "text": "She smokes one pack per day.", "labels": ["SMOKING"],
       "source": "gold", "note_id": "note-1", "split": "train"}

  - `id`: unique across all three files;
  - `text`: the sentence;
  - `labels`: category names from the taxonomy; `[]` means NONE;
  - `source`: always `"gold"`;
  - `note_id`: the note the sentence comes from;
  - `split`: `train`, `dev` or `test`, the file it sits in.
- Splits are by note: all sentences of a note go to one split, never two.
- Gold is private: clinsynth sends it only to local LMs or endpoints approved in
  `[privacy]` of `../clinsynth.toml`. Keep it out of version control if it is real data.
"""


_RULES = r"""# The rule list (clinsynth.data.rules): the cues a clinician would write from the guideline in
# ten minutes. It is the baseline every report compares against, a feature of the hybrid
# model (MIX+rules) and the bronze subject filter. TEMPLATE: rewrite it for your categories.
# Patterns are Python regular expressions, matched case-insensitively.
about: >-
  Template written from taxonomy.yaml's guideline only; never tuned on gold test.
scope:
  # A scope cue before a category cue, in the same clause, changes what the cue means.
  negation: ['\bdenies\b', '\bdenied\b', '\bno\b', '\bnever\b', '\bnon-?smoker\b', '\bnegative for\b']
  other_person: ['\b(mother|father|brother|sister|husband|wife|son|daughter|family history)\b']
  hypothetical: ['\bif\b', '\bmonitor for\b']
categories:
  SMOKING:
    cues: ['\bsmok(e|es|ed|er|ing)\b', '\bcigar(ette)?s?\b', '\btob(acco)?\b', '\bppd\b', '\bpack[- ]years?\b',
           '\bchew(s|ing)? tobacco\b', '\bsnuff\b', '\bvap(e|es|ing)\b']
    exclude: ['second-?hand smoke']
    negation: drop        # the guideline: denied or never use is NONE
    other_person: drop    # "father smoked" is NONE
  ALCOHOL_USE:
    cues: ['\bdrinks?\b', '\bdrinking\b', '\betoh\b', '\balcohol\b', '\bbeers?\b', '\bwine\b', '\bsober\b']
    exclude: ['\balcohol (swab|prep)\b', '\bdrinks? (water|fluids)\b']
"""


def _readme(directory: str, commands: list[str]) -> str:
    shown = "\n".join(f"    {c}" for c in commands)
    return f"""\
# A clinsynth task

Written by `clinsynth init {directory}`. A template: a small, working two-category task
(SMOKING, ALCOHOL_USE) to replace with your own.

| File | What it is |
| --- | --- |
| `clinsynth.toml` | the task: names every file below, the LM of each role, privacy rules, example sentences |
| `taxonomy.yaml` | the categories and annotation guideline (definitions, include / exclude, examples) |
| `rules.yaml` | the rule list: cue patterns per category with negation / someone-else / hypothetical scope |
| `gold/train.jsonl`, `gold/dev.jsonl`, `gold/test.jsonl` | expert-labelled sentences, split by note (placeholders) |
| `gold/README.md` | the gold record schema |
| `data/` | silver and bronze sets, written by runs |
| `compiled/`, `outputs/`, `reports/` | compiled programs, models and runs, reports (written by runs) |

To make it yours:

1. Replace `taxonomy.yaml` with your guideline (check it with `clinsynth taxonomy --path taxonomy.yaml`).
2. Rewrite `rules.yaml` for your categories (the baseline and the hybrid's features).
3. Replace the gold stubs with your labelled sentences (see `gold/README.md`).
4. Set `[examples].quick_categories` to two of your categories, and pick the LMs in `[lm.*]`.

Next commands:

{shown}
"""


def init_task(directory: Path, name: str | None = None, force: bool = False) -> InitResult:
    """Write a template task folder into ``directory``; refuse to overwrite one unless ``force``."""
    directory = Path(directory).expanduser()
    root = directory.resolve()
    if root.exists() and not root.is_dir():
        raise ClinsynthError(f"{directory} exists and is not a folder")
    config = root / CONFIG_NAME
    name = (name or "").strip() or task_name(root)
    title = f"Tobacco and alcohol use ({name}) - replace with your task's title"
    where = shlex.quote(str(directory))
    commands = [
        f"clinsynth run --quick --task {where}",
        f"clinsynth label --task {where} --limit 20 --out {shlex.quote(str(directory / 'outputs' / 'try.jsonl'))}",
        f"clinsynth predict --task {where} --input x.txt --out y.jsonl",
    ]
    contents: dict[Path, str] = {
        config: _config(name, title),
        root / "taxonomy.yaml": _taxonomy(name, title),
        root / "rules.yaml": _RULES,
        **{root / "gold" / f"{split}.jsonl": _gold_lines(split) for split in _GOLD},
        root / "gold" / "README.md": _GOLD_README,
        root / "README.md": _readme(where, commands),
    }
    existing = [path for path in contents if path.exists()]
    if existing and not force:
        what = f"{config} already exists" if config in existing else f"{existing[0]} already exists"
        raise ClinsynthError(f"{what}; use --force to overwrite the template files")
    # The config last: a write that fails midway leaves no task that looks complete.
    for path in sorted(contents, key=lambda p: p == config):
        atomic_write_text(path, contents[path])
    return InitResult(root=root, files=list(contents), next_commands=commands)

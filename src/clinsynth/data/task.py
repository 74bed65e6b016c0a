"""A task is data: a folder whose ``clinsynth.toml`` names everything a run needs.

    name = "ad_signs"                  # short id (file names, report titles)
    title = "Signs of ..."             # model cards and reports
    taxonomy = "taxonomy.yaml"         # categories + guideline (clinsynth.data.taxonomy)
    gold = "gold"                      # train.jsonl, dev.jsonl, test.jsonl (private)
    corpus = "corpus.csv.gz"           # public notes to label (default: the bundled MTSamples)
    silver = "data/silver.jsonl"       # where silver / bronze sets are kept
    bronze = "data/bronze.jsonl"
    compiled = "compiled"              # compiled DSPy programs
    outputs = "outputs"                # models, runs, caches of this task
    reports = "reports"
    rules = "rules.yaml"               # optional: cue patterns per category (clinsynth.data.rules)

    [lm.labeler]                       # one table per role: labeler, generator, prompt_model
    model = "local"                    # 'local' (embedded) or a litellm model string
    # api_base = "http://127.0.0.1:8000/v1"

    [privacy]
    approved_endpoints = []            # remote endpoints that may receive private data
    remote_endpoints = []              # loopback URLs that forward elsewhere (tunnels, proxies)

    [examples]
    sentences = ["..."]                # shown after training the default model
    quick_categories = ["A", "B"]      # categories `clinsynth run --quick` generates for

    [label]                            # how the task's silver set is made (LabelConfig fields)
    limit = 2000
    pool = 30000

    [generate]                         # how the task's bronze set is made (BronzeConfig fields)
    per_category = 50
    max_rounds = 10

    [experiment]                       # the cross-validated augmentation experiment (CVSettings fields)
    mixes = ["gold", "gold+bronze:25", "gold+bronze", "gold+silver-agree"]
    folds = 3
    seeds = [0, 1, 2]
    whole_view = true                  # also score the pool's whole notes out of fold; they join the choice

Every path resolves against the task folder, never the current directory. The bundled
task (signs of Alzheimer's disease) is ``tasks/ad_signs``; ``--task DIR`` (or
``$CLINSYNTH_TASK``) picks another.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from clinsynth.errors import DataError
from clinsynth.paths import PROJECT_ROOT

CONFIG_NAME = "clinsynth.toml"
BUNDLED_TASK = PROJECT_ROOT / "tasks" / "ad_signs"
BUNDLED_CORPUS = PROJECT_ROOT / "data" / "corpus" / "mtsamples.csv.gz"
ROLES = ("labeler", "generator", "prompt_model")
DEFAULT_MODEL = "local"
_TOP_KEYS = {
    "name", "title", "taxonomy", "gold", "corpus", "silver", "bronze", "compiled", "outputs", "reports", "rules",
}  # fmt: skip
_SECTIONS = {"lm", "privacy", "examples", "label", "generate", "experiment"}
# Settings a task may fix for making its silver / bronze sets (numbers only: paths and LMs
# have their own keys). Values are checked against the step configs when they are built.
_SILVER_KEYS = {"limit", "pool", "negatives", "prefilter", "samples", "seed"}
_BRONZE_KEYS = {
    "per_category", "negatives", "multi_label", "per_call", "overgenerate", "max_rounds", "round_trip",
    "near_duplicate", "leak_cosine", "leak_ngram", "seed", "shorthand_share",
}  # fmt: skip


@dataclass(frozen=True)
class LMSpec:
    """Which LM a role uses: a model string and, for self-hosted servers, a base URL."""

    model: str = DEFAULT_MODEL
    api_base: str | None = None


@dataclass(frozen=True)
class PrivacyPolicy:
    """Endpoints approved for private data, and loopback URLs that are really remote."""

    approved_endpoints: tuple[str, ...] = ()
    remote_endpoints: tuple[str, ...] = ()
    source: Path | None = None


@dataclass(frozen=True)
class Task:
    root: Path
    name: str
    title: str
    taxonomy_path: Path
    gold_dir: Path
    corpus: Path
    silver: Path
    bronze: Path
    compiled_dir: Path
    output_dir: Path
    reports_dir: Path
    rules_path: Path | None = None  # None: the task has no rule list
    lms: dict[str, LMSpec] = field(default_factory=dict)
    privacy: PrivacyPolicy = PrivacyPolicy()
    examples: tuple[str, ...] = ()
    quick_categories: tuple[str, ...] = ()
    silver_settings: dict[str, Any] = field(default_factory=dict)  # [label]: LabelConfig fields
    bronze_settings: dict[str, Any] = field(default_factory=dict)  # [generate]: BronzeConfig fields
    experiment_settings: dict[str, Any] = field(default_factory=dict)  # [experiment]: CVSettings fields

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @cached_property
    def taxonomy(self) -> Any:  # clinsynth.data.taxonomy.Taxonomy
        from clinsynth.data.taxonomy import load_taxonomy

        return load_taxonomy(self.taxonomy_path)

    @cached_property
    def rules(self) -> Any:  # clinsynth.data.rules.RuleSet | None
        """The task's validated rule list, or None when it has none."""
        if self.rules_path is None:
            return None
        from clinsynth.data.rules import load_rules

        return load_rules(self.rules_path, self.taxonomy.names)

    def lm(self, role: str) -> LMSpec:
        if role not in ROLES:
            raise ValueError(f"unknown LM role {role!r}; roles: {ROLES}")
        return self.lms.get(role, LMSpec())

    def split_path(self, split: str) -> Path:
        from clinsynth.data.gold import split_path

        return split_path(split, self.gold_dir)

    def gold(self, splits: tuple[str, ...] | None = None) -> dict[str, list[Any]]:
        """Validated gold splits (``clinsynth.data.gold.load_gold``)."""
        from clinsynth.data.gold import SPLITS, load_gold

        return load_gold(self.gold_dir, self.taxonomy, splits or SPLITS)

    def whole_notes(self, held_out: list[Any] | None = None, split: str = "test") -> list[Any]:
        """Every sentence of some whole gold notes of ``split`` (``clinsynth.data.gold.load_whole_notes``),
        given that split's records (read here when None); [] if the gold folder has none."""
        from clinsynth.data.gold import load_whole_notes

        if held_out is None:
            held_out = self.gold((split,))[split]
        return load_whole_notes(self.gold_dir, self.taxonomy, held_out, split)

    @property
    def model_dir(self) -> Path:
        """The default model, trained by ``clinsynth run`` and used by ``clinsynth predict``."""
        return self.output_dir / "model"

    def relative(self, path: Path | str | None) -> str:
        """A path as shown to people: relative to the task folder or project when inside one."""
        if path is None:
            return "-"
        resolved = Path(path).resolve()
        for base in (self.root, PROJECT_ROOT):
            try:
                return str(resolved.relative_to(base))
            except ValueError:
                continue
        return str(path)


def _path(data: dict[str, Any], key: str, root: Path, default: str | Path, source: Path) -> Path:
    value = data.get(key, default)
    if not isinstance(value, (str, Path)) or not str(value).strip():
        raise DataError("must be a non-empty path", path=source, field=key)
    path = Path(os.path.expanduser(str(value)))
    return (path if path.is_absolute() else root / path).resolve()


def _strings(value: Any, source: Path, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError("must be a list of strings", path=source, field=name)
    return tuple(v.strip() for v in value if v.strip())


def _settings(data: dict[str, Any], section: str, allowed: set[str], source: Path) -> dict[str, Any]:
    table = data.get(section) or {}
    if not isinstance(table, dict):
        raise DataError("must be a table", path=source, field=section)
    extra = set(table) - allowed
    if extra:
        raise DataError(f"unknown key(s) {sorted(extra)}; allowed: {sorted(allowed)}", path=source, field=section)
    for key, value in table.items():
        if not isinstance(value, (int, float, str, bool)):
            raise DataError("must be a number, string or boolean", path=source, field=f"{section}.{key}")
    return dict(table)


def _experiment_settings(data: dict[str, Any], source: Path) -> dict[str, Any]:
    table = data.get("experiment") or {}
    if not isinstance(table, dict):
        raise DataError("must be a table", path=source, field="experiment")
    extra = set(table) - {"mixes", "folds", "seeds", "whole_view"}
    if extra:
        raise DataError(f"unknown key(s) {sorted(extra)}; allowed: folds, mixes, seeds, whole_view", path=source,
                        field="experiment")  # fmt: skip
    out: dict[str, Any] = {}
    if "mixes" in table:
        out["mixes"] = _strings(table["mixes"], source, "experiment.mixes")
    if "seeds" in table:
        seeds = table["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(x, int) for x in seeds):
            raise DataError("must be a list of integers", path=source, field="experiment.seeds")
        out["seeds"] = tuple(seeds)
    if "folds" in table:
        if not isinstance(table["folds"], int) or table["folds"] < 2:
            raise DataError("must be an integer >= 2", path=source, field="experiment.folds")
        out["folds"] = table["folds"]
    if "whole_view" in table:
        if not isinstance(table["whole_view"], bool):
            raise DataError("must be true or false", path=source, field="experiment.whole_view")
        out["whole_view"] = table["whole_view"]
    return out


def parse_task(data: dict[str, Any], root: Path, source: Path) -> Task:
    """Build a Task from a parsed ``clinsynth.toml``; unknown keys are errors (typos)."""
    unknown = set(data) - _TOP_KEYS - _SECTIONS
    if unknown:
        raise DataError(f"unknown key(s) {sorted(unknown)}", path=source)
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise DataError("missing (a short task id)", path=source, field="name")
    lms: dict[str, LMSpec] = {}
    for role, spec in (data.get("lm") or {}).items():
        if role not in ROLES:
            raise DataError(f"unknown role; roles are {', '.join(ROLES)}", path=source, field=f"lm.{role}")
        if isinstance(spec, str):
            spec = {"model": spec}
        if not isinstance(spec, dict) or not isinstance(spec.get("model", DEFAULT_MODEL), str):
            raise DataError("must be a table with 'model' (and optional 'api_base')", path=source, field=f"lm.{role}")
        extra = set(spec) - {"model", "api_base"}
        if extra:
            raise DataError(f"unknown key(s) {sorted(extra)}", path=source, field=f"lm.{role}")
        lms[role] = LMSpec(model=spec.get("model", DEFAULT_MODEL), api_base=spec.get("api_base") or None)
    privacy = data.get("privacy") or {}
    extra = set(privacy) - {"approved_endpoints", "remote_endpoints"}
    if extra:
        raise DataError(f"unknown key(s) {sorted(extra)}", path=source, field="privacy")
    examples = data.get("examples") or {}
    extra = set(examples) - {"sentences", "quick_categories"}
    if extra:
        raise DataError(f"unknown key(s) {sorted(extra)}", path=source, field="examples")
    return Task(
        silver_settings=_settings(data, "label", _SILVER_KEYS, source),
        bronze_settings=_settings(data, "generate", _BRONZE_KEYS, source),
        experiment_settings=_experiment_settings(data, source),
        root=root,
        name=name.strip(),
        title=str(data.get("title") or name).strip(),
        taxonomy_path=_path(data, "taxonomy", root, "taxonomy.yaml", source),
        gold_dir=_path(data, "gold", root, "gold", source),
        corpus=_path(data, "corpus", root, BUNDLED_CORPUS, source),
        silver=_path(data, "silver", root, "data/silver.jsonl", source),
        bronze=_path(data, "bronze", root, "data/bronze.jsonl", source),
        compiled_dir=_path(data, "compiled", root, "compiled", source),
        output_dir=_path(data, "outputs", root, "outputs", source),
        reports_dir=_path(data, "reports", root, "reports", source),
        rules_path=_rules_path(data, root, source),
        lms=lms,
        privacy=PrivacyPolicy(
            approved_endpoints=_strings(privacy.get("approved_endpoints"), source, "privacy.approved_endpoints"),
            remote_endpoints=_strings(privacy.get("remote_endpoints"), source, "privacy.remote_endpoints"),
            source=source,
        ),
        examples=_strings(examples.get("sentences"), source, "examples.sentences"),
        quick_categories=_strings(examples.get("quick_categories"), source, "examples.quick_categories"),
    )


def _rules_path(data: dict[str, Any], root: Path, source: Path) -> Path | None:
    """A named rules file must exist; without the key, ``rules.yaml`` is used when present."""
    if "rules" not in data:
        default = root / "rules.yaml"
        return default.resolve() if default.is_file() else None
    path = _path(data, "rules", root, "rules.yaml", source)
    if not path.is_file():
        raise DataError(f"rules file {path} not found", path=source, field="rules")
    return path


def load_task(path: Path | str | None = None) -> Task:
    """The task in folder ``path`` (or its ``clinsynth.toml``); default ``$CLINSYNTH_TASK``, else the bundled one."""
    if path is None:
        path = os.environ.get("CLINSYNTH_TASK") or BUNDLED_TASK
    path = Path(path).expanduser().resolve()
    source = path if path.is_file() else path / CONFIG_NAME
    if not source.exists():
        raise DataError(f"no task here: {CONFIG_NAME} not found (make one with `clinsynth init DIR`)", path=source)
    try:
        data = tomllib.loads(source.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"not valid TOML: {exc}", path=source) from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text: {exc.reason}", path=source) from exc
    return parse_task(data, source.parent, source)

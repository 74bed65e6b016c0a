"""A task's rule list: per-category cue patterns with negation and experiencer scope.

A task folder may hold ``rules.yaml`` (or name another file with ``rules = "..."`` in its
``clinsynth.toml``). It is the list a clinician would write from the guideline in ten
minutes, and it plays three parts: the baseline every report compares against, features
of the hybrid classifier (``clinsynth.model.hybrid``), and a check on generated sentences (a
bronze sentence whose only cue is about a relative is not the patient's).

    about: "How the list was made (written from the guideline; what it was checked on)."
    scope:
      clause_break: '[.;!?]|\\bbut\\b'      # where a cue's scope ends (default below)
      negation: ['\\bdenies\\b', '\\bno\\b']  # before a cue in its clause: the cue is negated
      other_person: ['\\bmother\\b']        # before a cue in its clause: someone else's
      hypothetical: ['\\bif\\b']             # before a cue in its clause: not stated as fact
    categories:
      TOBACCO:
        cues: ['\\bsmok(e|es|ed|er|ing)\\b', '\\btob\\b', '\\bppd\\b']
        exclude: ['\\bsecond-?hand smoke\\b']  # a sentence matching one is never this category
        negation: keep         # keep: "denies smoking" still labels (status none); drop (default)
        other_person: drop     # drop (default): "husband smokes" does not label; keep
        hypothetical: drop     # drop (default) or keep

Patterns are Python regular expressions matched case-insensitively. Every error names the
file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from clinsynth.data.fileio import check_file, read_text
from clinsynth.errors import DataError

DEFAULT_CLAUSE_BREAK = r"[.;!?]|\bbut\b|\bhowever\b|\bthough\b"
SCOPES = ("negation", "other_person", "hypothetical")
_SENTENCE_SCOPES = ("other_person", "hypothetical")  # wording that takes a whole sentence out of a category's scope
_CHOICES = ("keep", "drop")
_TOP_KEYS = {"about", "scope", "categories"}
_SCOPE_KEYS = {"clause_break", *SCOPES}
_CATEGORY_KEYS = {"cues", "exclude", *SCOPES}


@dataclass(frozen=True)
class CategoryRule:
    """One category's cues, its exclusions and what each scope does to a cue."""

    name: str
    cues: tuple[re.Pattern[str], ...]
    exclude: tuple[re.Pattern[str], ...] = ()
    keep: frozenset[str] = frozenset()  # the scopes under which a cue still labels


@dataclass(frozen=True)
class RuleHit:
    """Why a category fired (or did not) for one sentence: the cue and the scope that blocked it."""

    category: str
    cue: str
    blocked_by: str | None = None


@dataclass
class RuleSet:
    """A task's validated rule list; ``predict`` returns label sets like any classifier."""

    categories: tuple[CategoryRule, ...]
    clause_break: re.Pattern[str]
    scope: dict[str, tuple[re.Pattern[str], ...]]
    about: str = ""
    path: Path | None = None
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.names = tuple(c.name for c in self.categories)

    def _blocking_scope(self, sentence: str, start: int, rule: CategoryRule) -> str | None:
        """The first scope cue (in the cue's clause, before it) that the category does not keep."""
        clause = self.clause_break.split(sentence[:start])[-1]
        for scope in SCOPES:
            if scope in rule.keep:
                continue
            if any(p.search(clause) for p in self.scope.get(scope, ())):
                return scope
        return None

    def explain(self, sentence: str) -> list[RuleHit]:
        """Every cue found in the sentence, with the scope that blocked it (None: it labels)."""
        hits: list[RuleHit] = []
        for rule in self.categories:
            if any(p.search(sentence) for p in rule.exclude):
                continue
            for cue in rule.cues:
                for match in cue.finditer(sentence):
                    hits.append(RuleHit(rule.name, match.group(0), self._blocking_scope(sentence, match.start(), rule)))
        return hits

    def labels(self, sentence: str) -> list[str]:
        fired = {h.category for h in self.explain(sentence) if h.blocked_by is None}
        return [n for n in self.names if n in fired]

    def predict(self, texts: Sequence[str]) -> list[list[str]]:
        return [self.labels(t) for t in texts]

    def hit_matrix(self, texts: Sequence[str], names: Sequence[str]) -> np.ndarray:
        """Rows: sentences; columns: ``names``; 1.0 where the rule list labels the category."""
        out = np.zeros((len(texts), len(names)), dtype=np.float32)
        column = {n: j for j, n in enumerate(names)}
        for i, labels in enumerate(self.predict(texts)):
            for label in labels:
                if label in column:
                    out[i, column[label]] = 1.0
        return out

    def out_of_scope(self, sentence: str) -> set[str]:
        """Categories the sentence is not evidence for, by the list's scope: a cue of the category is
        present but every one is blocked (negated, someone else's, hypothetical), or the sentence
        carries someone-else or hypothetical wording that the category does not keep. Negation
        wording alone does not count: one sentence often denies one sign and states another."""
        return self._out_of_scope(sentence, self.explain(sentence))

    def _out_of_scope(self, sentence: str, hits: Sequence[RuleHit]) -> set[str]:
        firing = {h.category for h in hits if h.blocked_by is None}
        out = {h.category for h in hits if h.blocked_by is not None}
        worded = {s for s in _SENTENCE_SCOPES if any(p.search(sentence) for p in self.scope.get(s, ()))}
        out.update(rule.name for rule in self.categories if worded - rule.keep)
        return out - firing

    def scope_matrices(self, texts: Sequence[str], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(``hit_matrix``, out of scope) in one pass over the cues: rows sentences, columns ``names``;
        the second is True where ``out_of_scope`` names the category."""
        hits = np.zeros((len(texts), len(names)), dtype=np.float32)
        blocked = np.zeros((len(texts), len(names)), dtype=bool)
        column = {n: j for j, n in enumerate(names)}
        for i, text in enumerate(texts):
            found = self.explain(text)
            for category in {h.category for h in found if h.blocked_by is None} & column.keys():
                hits[i, column[category]] = 1.0
            for category in self._out_of_scope(text, found) & column.keys():
                blocked[i, column[category]] = True
        return hits, blocked

    def blocked(self, sentence: str, scope: str) -> list[str]:
        """Categories whose every cue in the sentence is blocked by ``scope`` (e.g. a relative's use)."""
        hits = self.explain(sentence)
        firing = {h.category for h in hits if h.blocked_by is None}
        return sorted({h.category for h in hits if h.blocked_by == scope} - firing)


# --- loading and validation -------------------------------------------------------------


def _lines(node: yaml.Node) -> dict[Any, Any]:
    """The line (1-based) of every mapping key and sequence item, nested like the data."""
    if isinstance(node, yaml.MappingNode):
        return {k.value: (k.start_mark.line + 1, _lines(v)) for k, v in node.value}
    if isinstance(node, yaml.SequenceNode):
        return {i: (item.start_mark.line + 1, _lines(item)) for i, item in enumerate(node.value)}
    return {}


def _line(lines: dict[Any, Any], *keys: Any) -> int | None:
    line = None
    for key in keys:
        if key not in lines:
            break
        line, lines = lines[key]
    return line


class _Validator:
    def __init__(self, path: Path, lines: dict[Any, Any]) -> None:
        self.path, self.lines = path, lines

    def fail(self, message: str, keys: Sequence[Any], fieldname: str) -> None:
        raise DataError(message, path=self.path, line=_line(self.lines, *keys), field=fieldname)

    def mapping(self, value: Any, keys: Sequence[Any], fieldname: str, allowed: set[str]) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail("must be a mapping", keys, fieldname)
        unknown = sorted(set(value) - allowed)
        if unknown:
            self.fail(
                f"unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})", [*keys, unknown[0]], fieldname
            )
        return value

    def pattern(self, value: Any, keys: Sequence[Any], fieldname: str) -> re.Pattern[str]:
        if not isinstance(value, str) or not value.strip():
            self.fail("a pattern must be a non-empty string", keys, fieldname)
        try:
            compiled = re.compile(value, re.I)
        except re.error as exc:
            self.fail(f"invalid regular expression {value!r}: {exc}", keys, fieldname)
        if compiled.search(""):
            self.fail(f"pattern {value!r} matches the empty string, so it would match every sentence", keys, fieldname)
        return compiled

    def patterns(self, value: Any, keys: Sequence[Any], fieldname: str) -> tuple[re.Pattern[str], ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("must be a list of patterns", keys, fieldname)
        return tuple(self.pattern(v, [*keys, i], f"{fieldname}[{i}]") for i, v in enumerate(value))


def parse_rules(data: Any, path: Path, lines: dict[Any, Any], category_names: Sequence[str]) -> RuleSet:
    v = _Validator(path, lines)
    top = v.mapping(data, [], "rules", _TOP_KEYS)
    scope_raw = v.mapping(top.get("scope"), ["scope"], "scope", _SCOPE_KEYS)
    clause = scope_raw.get("clause_break", DEFAULT_CLAUSE_BREAK)
    clause_break = v.pattern(clause, ["scope", "clause_break"], "scope.clause_break")
    scope = {s: v.patterns(scope_raw.get(s), ["scope", s], f"scope.{s}") for s in SCOPES}
    raw_categories = v.mapping(top.get("categories"), ["categories"], "categories", set(category_names))
    if not raw_categories:
        v.fail("no categories: list at least one category with its cues", ["categories"], "categories")
    categories = []
    for name in category_names:  # guideline order, so predictions come out canonical
        if name not in raw_categories:
            continue
        keys = ["categories", name]
        raw = v.mapping(raw_categories[name], keys, f"categories.{name}", _CATEGORY_KEYS)
        cues = v.patterns(raw.get("cues"), [*keys, "cues"], f"categories.{name}.cues")
        if not cues:
            v.fail("a category needs at least one cue", keys, f"categories.{name}.cues")
        keep = set()
        for s in SCOPES:
            choice = raw.get(s, "drop")
            if choice not in _CHOICES:
                v.fail(f"must be one of {', '.join(_CHOICES)}, not {choice!r}", [*keys, s], f"categories.{name}.{s}")
            if choice == "keep":
                keep.add(s)
        exclude = v.patterns(raw.get("exclude"), [*keys, "exclude"], f"categories.{name}.exclude")
        categories.append(CategoryRule(name, cues, exclude, frozenset(keep)))
    about = top.get("about", "")
    if not isinstance(about, str):
        v.fail("must be a string", ["about"], "about")
    return RuleSet(tuple(categories), clause_break, scope, about=about.strip(), path=path)


def load_rules(path: Path | str, category_names: Sequence[str]) -> RuleSet:
    """Read and validate a rules file against the task's categories."""
    path = Path(path)
    check_file(path, "rules file")
    text = read_text(path)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(
            f"rules file is not valid YAML: {exc}", path=path, line=mark.line + 1 if mark else None
        ) from exc
    return parse_rules(data, path, _lines(node) if node is not None else {}, category_names)

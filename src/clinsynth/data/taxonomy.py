"""Taxonomies as data: load and validate a taxonomy file, render it for prompts and types.

A taxonomy file (YAML) holds the annotation guideline in structured form: categories
with a definition, include/exclude rules and examples, plus general rules. Everything
that depends on the label set (prompt text, the ``Literal`` label type of signatures,
validation of records) is derived from it, so another taxonomy needs no code change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml

from clinsynth.data.fileio import check_file, read_text
from clinsynth.errors import DataError

_NAME_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")
NONE_LABEL = "NONE"  # the empty label set, spelled out for tables and multi-class views


@dataclass(frozen=True)
class Example:
    text: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class GenerationHints:
    """Optional hints for writing sentences of a category (label-to-data).

    ``reporters``: who states the sign (default: the program's clinical reporters).
    ``with_another_category``: the category is always stated together with another one
    (e.g. a relative reporting a change *and* the change itself). ``aspects``: concrete
    sub-topics, one of which each generation call focuses on (diversity). ``shorthand``:
    abbreviations and note wording of the category (ETOH, ppd, SNF, A&Ox1), one of which a
    call may be asked to use, so generated sentences cover how notes are really written.
    """

    reporters: tuple[str, ...] = ()
    with_another_category: bool = False
    aspects: tuple[str, ...] = ()
    shorthand: tuple[str, ...] = ()


@dataclass(frozen=True)
class Category:
    name: str
    definition: str
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    examples: tuple[Example, ...] = ()
    generation: GenerationHints = field(default_factory=GenerationHints)


@dataclass(frozen=True)
class Taxonomy:
    """A validated label set with the guideline that defines it."""

    name: str
    title: str
    categories: tuple[Category, ...]
    general_rules: tuple[str, ...] = ()
    unit: str = ""
    source: Path | None = field(default=None, compare=False)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def category(self, name: str) -> Category:
        for c in self.categories:
            if c.name == name:
                return c
        raise KeyError(f"unknown category {name!r} in taxonomy {self.name!r}")

    def label_type(self, allow_none: bool = False) -> Any:
        """``list[Literal[...]]`` over the category names, for DSPy signature fields.

        ``allow_none`` adds the literal NONE, which small models often answer instead of
        an empty list; callers drop it with :meth:`canonical`.
        """
        names = (*self.names, NONE_LABEL) if allow_none else self.names
        return list[Literal[names]]  # type: ignore[valid-type]

    def canonical(self, labels: list[str] | tuple[str, ...] | set[str]) -> list[str]:
        """Deduplicate labels and put them in guideline order."""
        wanted = set(labels)
        return [n for n in self.names if n in wanted]

    def first_label(self, labels: list[str] | tuple[str, ...]) -> str:
        """The multi-class view: the first category in guideline order, or NONE."""
        ordered = self.canonical(labels)
        return ordered[0] if ordered else NONE_LABEL

    def unknown_labels(self, labels: list[str] | tuple[str, ...]) -> list[str]:
        known = set(self.names)
        return [label for label in labels if label not in known]

    @cached_property
    def guideline_text(self) -> str:
        """The guideline rendered as prompt text (markdown), from the file's content."""
        lines = [f"# {self.title}", ""]
        if self.unit:
            lines += [self.unit, ""]
        if self.general_rules:
            lines += ["## General rules", self.general_rules_text, ""]
        lines.append("## Categories")
        for c in self.categories:
            lines += ["", self.category_text(c.name)]
        lines += ["", f"An empty set of categories means {NONE_LABEL}."]
        return "\n".join(lines)

    @property
    def general_rules_text(self) -> str:
        """The guideline's general rules, numbered, as in ``guideline_text``."""
        return "\n".join(f"{i}. {rule}" for i, rule in enumerate(self.general_rules, 1))

    def category_text(self, name: str) -> str:
        """One category's part of ``guideline_text``: definition, inclusions, exclusions, examples."""
        c = self.category(name)
        lines = [f"### {c.name}", c.definition]
        lines += [f"- Include: {r}" for r in c.include]
        lines += [f"- Not: {r}" for r in c.exclude]
        for ex in c.examples:
            shown = " + ".join(ex.labels) if ex.labels else NONE_LABEL
            lines.append(f'- "{ex.text}" -> {shown}')
        return "\n".join(lines)


def _require(cond: bool, path: Path, message: str) -> None:
    if not cond:
        raise DataError(f"invalid taxonomy: {message}", path=path)


def _str_list(value: Any, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    _require(
        isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value),
        path,
        f"{where} must be a list of non-empty strings",
    )
    return tuple(v.strip() for v in value)


def parse_taxonomy(data: Any, path: Path) -> Taxonomy:
    """Validate the parsed YAML of a taxonomy file; errors name the file and the item."""
    _require(isinstance(data, dict), path, "top level must be a mapping")
    name = data.get("name")
    _require(isinstance(name, str) and bool(name.strip()), path, "'name' must be a non-empty string")
    raw_categories = data.get("categories")
    _require(
        isinstance(raw_categories, list) and len(raw_categories) >= 1, path, "'categories' must be a non-empty list"
    )
    seen: set[str] = set()
    for i, raw in enumerate(raw_categories):
        _require(isinstance(raw, dict), path, f"categories[{i}] must be a mapping")
        cname = raw.get("name")
        _require(
            isinstance(cname, str) and bool(_NAME_RE.match(cname or "")),
            path,
            f"categories[{i}].name must be UPPER_SNAKE_CASE, got {cname!r}",
        )
        _require(cname != NONE_LABEL, path, f"'{NONE_LABEL}' is reserved for the empty label set")
        _require(cname not in seen, path, f"duplicate category name {cname!r}")
        seen.add(cname)

    categories = []
    for raw in raw_categories:
        cname = raw["name"]
        definition = raw.get("definition")
        _require(
            isinstance(definition, str) and bool(definition.strip()),
            path,
            f"category {cname}: 'definition' must be a non-empty string",
        )
        examples = []
        for j, ex in enumerate(raw.get("examples") or []):
            _require(
                isinstance(ex, dict) and isinstance(ex.get("text"), str),
                path,
                f"category {cname}: examples[{j}] needs a 'text' string",
            )
            labels = ex.get("labels", [])
            _require(isinstance(labels, list), path, f"category {cname}: examples[{j}].labels must be a list")
            unknown = [label for label in labels if label not in seen]
            _require(not unknown, path, f"category {cname}: examples[{j}] has unknown label(s) {unknown}")
            examples.append(Example(text=ex["text"], labels=tuple(labels)))
        categories.append(
            Category(
                name=cname,
                definition=" ".join(definition.split()),
                include=_str_list(raw.get("include"), path, f"category {cname}: 'include'"),
                exclude=_str_list(raw.get("exclude"), path, f"category {cname}: 'exclude'"),
                examples=tuple(examples),
                generation=_generation_hints(raw.get("generation"), path, cname),
            )
        )
    return Taxonomy(
        name=name.strip(),
        title=str(data.get("title") or name).strip(),
        categories=tuple(categories),
        general_rules=tuple(" ".join(r.split()) for r in _str_list(data.get("general_rules"), path, "'general_rules'")),
        unit=" ".join(str(data.get("unit") or "").split()),
        source=path,
    )


def _generation_hints(raw: Any, path: Path, cname: str) -> GenerationHints:
    if raw is None:
        return GenerationHints()
    _require(isinstance(raw, dict), path, f"category {cname}: 'generation' must be a mapping")
    unknown = set(raw) - {"reporters", "with_another_category", "aspects", "shorthand"}
    _require(not unknown, path, f"category {cname}: unknown 'generation' key(s) {sorted(unknown)}")
    with_other = raw.get("with_another_category", False)
    _require(isinstance(with_other, bool), path, f"category {cname}: generation.with_another_category must be a bool")
    return GenerationHints(
        reporters=_str_list(raw.get("reporters"), path, f"category {cname}: generation.reporters"),
        with_another_category=with_other,
        aspects=_str_list(raw.get("aspects"), path, f"category {cname}: generation.aspects"),
        shorthand=_str_list(raw.get("shorthand"), path, f"category {cname}: generation.shorthand"),
    )


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(problem=f"duplicate key {key!r}")
        self.key, self.line, self.first_line = key, line, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses repeated mapping keys.

    Plain YAML loading keeps the last value silently, so a category edited twice (e.g. two
    ``definition:`` lines) would lose one without a word.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" keys may be overridden by design
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep=deep)


def load_taxonomy(path: Path | str) -> Taxonomy:
    """Read and validate a taxonomy file (UTF-8, a byte-order mark allowed; no repeated keys)."""
    path = Path(path)
    check_file(path, "taxonomy file")
    try:
        data = yaml.load(read_text(path), Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except _DuplicateKeyError as exc:
        raise DataError(
            f"invalid taxonomy: duplicate key {exc.key!r} (first on line {exc.first_line})", path=path, line=exc.line
        ) from exc
    except yaml.YAMLError as exc:
        raise DataError(f"taxonomy is not valid YAML: {exc}", path=path) from exc
    return parse_taxonomy(data, path)

"""Readable results: plain-text/markdown and HTML tables (plots come with the eval suites)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path


def html_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """The same table as HTML, every cell escaped."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table whose columns line up in a terminal too."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), sep, *[line(r) for r in cells[1:]]])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def sections(text: str) -> dict[str, str]:
    """A markdown text's ``## `` sections: heading line -> the section's text, heading included."""
    out: dict[str, str] = {}
    heading = None
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line
            out[heading] = ""
        if heading is not None:
            out[heading] += line + "\n"
    return out


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) one ``## `` section of a markdown file, keeping everything else.

    Benchmarks that share a report file each own a section, so one rerun does not
    drop another's numbers.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    section = f"{heading}\n\n{body.strip()}\n"
    old = sections(text).get(heading)
    if old is not None:
        text = text.replace(old, section + ("\n" if old.endswith("\n\n") else ""), 1)
    else:
        text = text.rstrip("\n") + ("\n\n" if text.strip() else "") + section
    path.write_text(text, encoding="utf-8")

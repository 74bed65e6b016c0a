"""Stable content hashes: of DSPy programs, of JSON-able parts and of files (provenance and run keys)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def program_sha256(program: Any, *extra: str) -> str:
    """sha256 of a program's saved state (instructions, fields, demos) plus extra text.

    Two programs with the same prompts and demos hash the same, whatever process made
    them; pass the guideline text as ``extra`` so a taxonomy edit changes the hash.
    """
    state = program.dump_state()
    payload = json.dumps(state, sort_keys=True, default=str, ensure_ascii=False)
    digest = hashlib.sha256(payload.encode("utf-8"))
    for text in extra:
        digest.update(b"\0" + text.encode("utf-8"))
    return digest.hexdigest()


def parts_sha256(*parts: Any) -> str:
    """sha256 of JSON-able parts (keys sorted, anything else as ``str``): what a stored run depends on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8") + b"\0")
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    with Path(path).open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()

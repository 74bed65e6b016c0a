"""Stable content hashes of DSPy programs, for provenance."""

from __future__ import annotations

import hashlib
import json
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

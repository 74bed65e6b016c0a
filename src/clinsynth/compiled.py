"""Compiled programs on disk: where they live, and the metadata saved with them.

A compiled program is DSPy's state-only JSON (instructions, demos) with a ``metadata``
block: DSPy's dependency versions plus how it was made (LM, optimizer, seed, data,
scores before and after) and the sha256 of the taxonomy it was compiled for, so a
program made for another guideline is not used silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from clinsynth.errors import ClinsynthError
from clinsynth.paths import COMPILED_DIR
from clinsynth.taxonomy import Taxonomy

log = logging.getLogger(__name__)


def lm_slug(lm_name: str) -> str:
    """A file-name-safe short name for an LM: ``local`` for the embedded one."""
    if lm_name.startswith("local/"):
        return "local"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", lm_name).strip("_")


def compiled_path(program: str, lm_name: str, directory: Path = COMPILED_DIR) -> Path:
    """``compiled/<program>.<lm>.json``, e.g. ``compiled/data_to_label.local.json``."""
    return Path(directory) / f"{program}.{lm_slug(lm_name)}.json"


def taxonomy_sha256(taxonomy: Taxonomy) -> str:
    return hashlib.sha256(taxonomy.guideline_text.encode("utf-8")).hexdigest()


def save_compiled(program: Any, path: Path, metadata: dict[str, Any]) -> None:
    """``program.save`` (state only), then add our metadata to DSPy's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.json")
    program.save(str(tmp))
    state = json.loads(tmp.read_text(encoding="utf-8"))
    state.setdefault("metadata", {}).update(metadata)
    tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_metadata(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError) as exc:
        raise ClinsynthError(f"{path}: not a readable compiled program ({exc})") from exc


def load_compiled(program: Any, path: Path, taxonomy: Taxonomy) -> Any:
    """Load state into ``program``; refuse a program compiled for a different taxonomy."""
    path = Path(path)
    if not path.exists():
        raise ClinsynthError(f"{path}: compiled program not found")
    meta = read_metadata(path)
    made_for = meta.get("taxonomy_sha256")
    if made_for and made_for != taxonomy_sha256(taxonomy):
        raise ClinsynthError(
            f"{path}: compiled for another version of the guideline (taxonomy sha256 {made_for[:12]}, "
            f"current {taxonomy_sha256(taxonomy)[:12]}); recompile with python -m programs.compile"
        )
    try:
        program.load(str(path))
    except (KeyError, ValueError, TypeError) as exc:
        raise ClinsynthError(f"{path}: does not match this program ({type(exc).__name__}: {exc})") from exc
    return program

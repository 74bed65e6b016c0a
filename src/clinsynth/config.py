"""Project configuration (``clinsynth.toml`` at the project root, or ``$CLINSYNTH_CONFIG``).

Only settings a user must decide on purpose live here; today that is which remote LM
endpoints may receive private data:

    [privacy]
    approved_endpoints = ["https://llm.my-hospital.example/v1", "azure/*"]
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from clinsynth.errors import DataError
from clinsynth.paths import CONFIG_FILE


@dataclass(frozen=True)
class Config:
    approved_endpoints: tuple[str, ...] = ()
    source: Path | None = None


def load_config(path: Path | str | None = None) -> Config:
    """Read the project config; a missing file means defaults (nothing approved)."""
    if path is None:
        path = os.environ.get("CLINSYNTH_CONFIG") or CONFIG_FILE
    path = Path(path)
    if not path.exists():
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"config is not valid TOML: {exc}", path=path) from exc
    privacy = data.get("privacy", {})
    approved = privacy.get("approved_endpoints", [])
    if not isinstance(approved, list) or not all(isinstance(e, str) for e in approved):
        raise DataError("must be a list of strings", path=path, field="privacy.approved_endpoints")
    return Config(approved_endpoints=tuple(e.strip() for e in approved if e.strip()), source=path)

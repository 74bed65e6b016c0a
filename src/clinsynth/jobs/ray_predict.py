"""``predict`` on the Ray engine (``clinsynth.jobs.engine_ray``): its worker and driver.

Each worker does exactly what the local engine does: it scores the same 256-sentence
batches with the same classifier loader (torch or ONNX) and writes the same rows.
Labelling on Ray is ``clinsynth.programs.steps.ray_label``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clinsynth.data.fileio import atomic_open, output_lock
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.engine_ray import RayEngine, ShardStore, map_shards, run_key, shards_of


class PredictShards:
    """A Ray actor: the classifier loaded once, then whole shards scored as ``predict_file`` scores them."""

    def __init__(self, model_dir: str, backend: str) -> None:
        from clinsynth.model.onnx_path import load_classifier

        self.classifier, self.backend = load_classifier(Path(model_dir), backend)

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        from clinsynth.model.predict import Sentence, predicted_rows

        sentences = [Sentence(**s) for s in payload["items"]]
        # Shards start at multiples of BATCH, so these are the local engine's batches.
        lines = [json.dumps(row, ensure_ascii=False) for row in predicted_rows(self.classifier, sentences)]
        return {"shard": payload["shard"], "rows": lines, "backend": self.backend}


def predict_with_ray(
    model_dir: Path, input_path: Path, out_path: Path, engine: RayEngine, notes: bool = False, backend: str = "auto"
) -> dict[str, Any]:
    """``clinsynth.model.predict.predict_file`` on Ray workers: the same output file, plus ``backend``."""
    from clinsynth.model.onnx_path import read_manifest, weights_fingerprint
    from clinsynth.model.predict import BATCH, read_sentences

    sentences = read_sentences(input_path, notes=notes)  # input errors raise before the output is touched
    size = engine.shard_size_for("predict")
    if size % BATCH:
        raise ClinsynthError(
            f"--shard-size for predict must be a multiple of {BATCH} (the batch the local engine scores; "
            f"other batches change scores in the last digits), got {size}"
        )
    started = time.monotonic()
    out_path = Path(out_path)
    shards = shards_of([asdict(s) for s in sentences], size)
    key = run_key(
        {"job": "predict", "model": str(Path(model_dir).resolve()), "weights": weights_fingerprint(model_dir),
         "onnx": read_manifest(model_dir), "backend": backend, "size": size, "sentences": shards}
    )  # fmt: skip
    with output_lock(out_path):  # one run on these shards at a time
        store = ShardStore(out_path, key).open()
        payloads = [{"shard": k, "items": s} for k, s in enumerate(shards) if not store.done(k)]
        worker = {"model_dir": str(model_dir), "backend": backend}
        with map_shards(engine, payloads, PredictShards, lambda _size: worker) as rows:
            for row in rows:
                meta = json.dumps({"backend": row["backend"]})
                store.write(row["shard"], row["rows"], side={"meta.json": [meta]})
        counts: Counter = Counter()
        backends = set()
        with atomic_open(out_path) as fh:  # in input order, whole or not at all, as the local engine writes
            for k in range(len(shards)):
                for line in store.read(k):
                    fh.write(line + "\n")
                    counts.update(json.loads(line)["labels"] or ["NONE"])
                backends.update(json.loads(m)["backend"] for m in store.read(k, "meta.json"))
        store.remove()
    return {
        "sentences": len(sentences),
        "seconds": time.monotonic() - started,
        "label_counts": dict(counts),
        "out": str(out_path),
        "backend": "+".join(sorted(backends)) or backend,
    }

"""The predict step: a trained classifier over sentences (or whole notes) of a JSONL / CSV / TXT file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinsynth.data.task import Task
from clinsynth.jobs.engine_ray import RayEngine


@dataclass(frozen=True)
class PredictConfig:
    input: Path
    out: Path
    model: Path | None = None  # None: the task's default model (trained first if missing)
    notes: bool = False  # each input item is a whole note: split it into sentences
    backend: str = "auto"  # auto: the model's ONNX export when usable (clinsynth export-onnx), else torch
    ray: RayEngine | None = None  # None: predict in this process; else on Ray actors (clinsynth.jobs.ray_predict)
    trust_pickle: bool = False  # load a model folder holding pickles (unpickling runs code): --trust-pickle


@dataclass
class PredictResult:
    out: Path
    model: Path
    sentences: int
    seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)
    backend: str = "torch"  # what ran: torch, onnx-fp32 or onnx-int8

    @property
    def rate(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0


def predict(task: Task, config: PredictConfig) -> PredictResult:
    from clinsynth.model.onnx_path import load_classifier
    from clinsynth.model.predict import count_sentences, predict_file
    from clinsynth.model.train import ensure_default_model

    total = count_sentences(config.input, config.notes)  # bad input fails before any model is trained or loaded
    model_dir = config.model or ensure_default_model(task)
    if config.ray is not None:  # workers load the model, the driver only merges their shards
        from clinsynth.jobs.ray_predict import predict_with_ray

        done = predict_with_ray(model_dir, config.input, config.out, config.ray, config.notes, config.backend)
        backend = done["backend"]
    else:
        classifier, backend = load_classifier(model_dir, config.backend, trust_pickle=config.trust_pickle)
        done = predict_file(classifier, config.input, config.out, notes=config.notes, total=total)
    return PredictResult(
        out=config.out,
        model=model_dir,
        sentences=done["sentences"],
        seconds=done["seconds"],
        label_counts=dict(done["label_counts"]),
        backend=backend,
    )


def predict_texts(task: Task, texts: list[str], model: Path | None = None, backend: str = "auto",
                  trust_pickle: bool = False) -> list[dict[str, Any]]:  # fmt: skip
    """Rows (id, text, labels, scores) for a few sentences given on the command line (``--text``)."""
    from clinsynth.model.onnx_path import load_classifier
    from clinsynth.model.predict import Sentence, predicted_rows
    from clinsynth.model.train import ensure_default_model

    classifier, _ = load_classifier(model or ensure_default_model(task), backend, trust_pickle=trust_pickle)
    return predicted_rows(classifier, [Sentence(f"text{i}", t.strip()) for i, t in enumerate(texts, 1)])

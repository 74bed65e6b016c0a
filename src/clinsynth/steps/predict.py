"""The predict step: a trained classifier over sentences (or whole notes) of a JSONL / CSV / TXT file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clinsynth.task import Task


@dataclass(frozen=True)
class PredictConfig:
    input: Path
    out: Path
    model: Path | None = None  # None: the task's default model (trained first if missing)
    notes: bool = False  # each input item is a whole note: split it into sentences


@dataclass
class PredictResult:
    out: Path
    model: Path
    sentences: int
    seconds: float
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0


def predict(task: Task, config: PredictConfig) -> PredictResult:
    from clinsynth.classifier import SignsClassifier
    from clinsynth.predict import predict_file, read_sentences
    from clinsynth.steps.train import ensure_default_model

    read_sentences(config.input, notes=config.notes)  # bad input fails before any model is trained or loaded
    model_dir = config.model or ensure_default_model(task)
    classifier = SignsClassifier.load(model_dir)  # a model knows its own labels
    done = predict_file(classifier, config.input, config.out, notes=config.notes)
    return PredictResult(
        out=config.out,
        model=model_dir,
        sentences=done["sentences"],
        seconds=done["seconds"],
        label_counts=dict(done["label_counts"]),
    )

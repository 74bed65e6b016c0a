"""The export-onnx step: a trained classifier as ONNX graphs for ``predict``'s fast path.

The fp32 graph is always written; with ``quantize`` an int8 one too. Each graph is scored
on gold *dev* (never test) with the model's own thresholds, and int8 becomes the variant
``predict`` uses only if it loses at most ``MAX_INT8_DEV_LOSS`` micro- and macro-F1 against fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from clinsynth.data.task import Task


@dataclass(frozen=True)
class ExportOnnxConfig:
    model: Path | None = None  # None: the task's default model
    quantize: bool = False  # also write an int8 graph (dynamic quantisation)


@dataclass
class ExportOnnxResult:
    model: Path
    files: dict[str, Path]  # variant -> graph
    default: str  # the variant predict uses
    dev_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # torch (from training), fp32, int8
    seconds: float = 0.0


def export_onnx(task: Task, config: ExportOnnxConfig) -> ExportOnnxResult:
    from clinsynth.errors import ClinsynthError
    from clinsynth.model.classifier import read_info
    from clinsynth.model.metrics import multilabel_scores
    from clinsynth.model.onnx_path import GATE_METRICS, choose_default, load_classifier
    from clinsynth.model.onnx_path import export_onnx as export_graphs

    started = time.monotonic()
    model_dir = config.model or task.model_dir
    info = read_info(model_dir)
    if info.labels != list(task.taxonomy.names):
        raise ClinsynthError(
            f"{model_dir}: trained for labels {info.labels}, but task {task.name} has {list(task.taxonomy.names)}: "
            "pass the model's --task"
        )
    done = export_graphs(model_dir, quantize=config.quantize)
    dev = task.gold(("dev",))["dev"]
    texts, gold = [r.text for r in dev], [r.labels for r in dev]
    scores: dict[str, dict[str, float]] = {}
    if info.dev_scores:
        scores["torch"] = {m: float(info.dev_scores[m]) for m in GATE_METRICS if m in info.dev_scores}
    for variant in done.files:
        classifier, _ = load_classifier(model_dir, backend="onnx", variant=variant)
        measured = multilabel_scores(gold, classifier.predict(texts), task.taxonomy)
        scores[variant] = {m: float(measured[m]) for m in GATE_METRICS}
    default = choose_default(model_dir, {k: v for k, v in scores.items() if k != "torch"})
    return ExportOnnxResult(
        model=model_dir, files=done.files, default=default, dev_scores=scores, seconds=time.monotonic() - started
    )

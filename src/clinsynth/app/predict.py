"""The predict step: a trained classifier over sentences (or whole notes) of a JSONL / CSV / TXT file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinsynth.data.task import Task
from clinsynth.jobs.engine_ray import RayEngine
from clinsynth.llm.lm import LMHandle


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
    # The LLM check's real LM usage (calls, cost_usd; {} where the LM is not metered); None: no check.
    check_usage: dict[str, Any] | None = None

    @property
    def rate(self) -> float:
        return self.sentences / self.seconds if self.seconds else 0.0


def predict(task: Task, config: PredictConfig, handle: LMHandle | None = None) -> PredictResult:
    """Label ``config.input``; a model whose card asks for the LLM check (``ModelInfo.llm_check``) asks the
    task's labeller LM about each label its student adds beyond the rule list (``handle``: that LM, e.g. in tests)."""
    from clinsynth.model.onnx_path import load_classifier
    from clinsynth.model.predict import count_sentences, predict_file
    from clinsynth.model.train import ensure_default_model

    total = count_sentences(config.input, config.notes)  # bad input fails before any model is trained or loaded
    model_dir = config.model or ensure_default_model(task)
    # The input is the user's own text: the privacy session must clear the LM before anything is sent.
    check = _check(task, model_dir, f"input {config.input}", handle)
    if config.ray is not None:  # workers load the model, the driver only merges their shards
        from clinsynth.jobs.ray_predict import predict_with_ray

        student = config.out.with_name(config.out.name + ".student") if check else config.out
        done = predict_with_ray(model_dir, config.input, student, config.ray, config.notes, config.backend)
        if check:  # on the driver: the embedded LM runs in one process
            done["label_counts"] = _check_file(check, student, config.out)
        backend = done["backend"]
    else:
        classifier, backend = load_classifier(model_dir, config.backend, trust_pickle=config.trust_pickle)
        done = predict_file(classifier, config.input, config.out, notes=config.notes, total=total,
                            revise=check.revise_rows if check else None)  # fmt: skip
    return PredictResult(
        out=config.out,
        model=model_dir,
        sentences=done["sentences"],
        seconds=done["seconds"],
        label_counts=dict(done["label_counts"]),
        backend=backend,
        check_usage=(check.handle.usage() or {}) if check else None,
    )


def predict_texts(task: Task, texts: list[str], model: Path | None = None, backend: str = "auto",
                  trust_pickle: bool = False, handle: LMHandle | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Rows (id, text, labels, scores) for a few sentences given on the command line (``--text``)."""
    from clinsynth.model.onnx_path import load_classifier
    from clinsynth.model.predict import Sentence, predicted_rows
    from clinsynth.model.train import ensure_default_model

    model_dir = model or ensure_default_model(task)
    classifier, _ = load_classifier(model_dir, backend, trust_pickle=trust_pickle)
    rows = predicted_rows(classifier, [Sentence(f"text{i}", t.strip()) for i, t in enumerate(texts, 1)])
    check = _check(task, model_dir, "sentences given with --text", handle)
    return check.revise_rows(rows) if check else rows


def _check(task: Task, model_dir: Path, what: str, handle: LMHandle | None) -> Any:
    """The model's LLM check (``clinsynth.programs.addition_check.AdditionCheck``), or None when its card has none."""
    from clinsynth.programs.addition_check import AdditionCheck

    return AdditionCheck.for_model(task, model_dir, what, handle)


def _check_file(check: Any, student: Path, out: Path) -> dict[str, int]:
    """``student``'s rows with the check applied, written to ``out`` whole or not at all; the label counts."""
    import json
    from itertools import islice

    from clinsynth.data.fileio import atomic_open, output_lock
    from clinsynth.model.predict import BATCH

    counts: dict[str, int] = {}
    with output_lock(out), student.open(encoding="utf-8") as rows, atomic_open(out) as fh:
        while batch := [json.loads(line) for line in islice(rows, BATCH)]:
            for row in check.revise_rows(batch):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                for label in row["labels"] or ["NONE"]:
                    counts[label] = counts.get(label, 0) + 1
    student.unlink()  # a rerun scores again and asks again (the LM's answers are cached)
    return counts

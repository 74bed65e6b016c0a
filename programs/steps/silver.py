"""A labelled item as a silver record with its provenance: what both labelling engines write
(``programs.steps.label`` in this process, ``programs.steps.ray_label`` on Ray workers)."""

from __future__ import annotations

from typing import Any

from clinsynth.data.records import InputItem, Provenance, Record
from clinsynth.jobs.runner import Attempt
from clinsynth.llm.lm import LMHandle

ROLE = "labeler"  # the task's LM role that labels


def make_record(
    item: InputItem, attempt: Attempt, handle: LMHandle, program: Any, digest: str, seed: int,
    attributes: dict[str, Any],
) -> Record:
    """A labelled item as a silver record with its provenance (both engines write these).

    ``handle`` names the LM and the endpoint that answered; ``program`` is the labeller (its
    class is recorded, beside ``digest``, its state's sha256).
    """
    pred = attempt.value
    labels = list(pred.categories)
    extra: dict[str, Any] = {"endpoint": handle.endpoint_id, "attempts": attempt.attempts, "rollout": attempt.rollout}
    if attempt.temperature is not None:
        extra["temperature"] = attempt.temperature
    if pred.confidence_method:
        extra["confidence_method"] = pred.confidence_method
    return Record(
        id=item.id,
        text=item.text,
        labels=labels,
        source="silver",
        note_id=item.note_id,
        provenance=Provenance(
            lm=handle.name,
            program=f"{type(program).__module__}.{type(program).__name__}",
            program_sha256=digest,
            seed=seed,
            confidence=None if pred.confidence is None else round(float(pred.confidence), 4),
            attributes={**extra, **attributes},
        ),
    )

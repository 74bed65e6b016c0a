"""End-to-end fine-tuning of a SetFit model with a differentiable multi-label head.

SetFit's own ``SetFitModel.fit(end_to_end=True)`` trains body and head together, but with
an unweighted loss, a fixed step schedule and no look at held-out data. With a few dozen
positives for some categories that under-trains rare ones and gives no way to stop at
the right epoch, so this loop adds three things to the same model parts:

- a positive-class weight per category in the BCE loss (``neg / pos``, capped), so rare
  categories are not drowned by NONE sentences;
- linear warm-up then linear decay of the learning rate over the epoch budget;
- after each epoch the model is scored on dev (thresholds tuned there), and the best
  epoch's weights are the ones kept (early stopping with patience).

The result is still a plain ``SetFitModel`` (body + ``SetFitHead``): it saves and loads
with SetFit's own ``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class EpochScore:
    epoch: int
    loss: float
    dev_score: float | None


def positive_weights(matrix: np.ndarray, cap: float, mask: np.ndarray | None = None) -> np.ndarray:
    """Per column ``negatives / positives``, at least 1 and at most ``cap`` (absent columns: 1);
    with a 0/1 ``mask``, only the cells it keeps are counted."""
    kept = np.ones_like(matrix) if mask is None else mask
    positives = (matrix * kept).sum(axis=0).astype(np.float64)
    negatives = kept.sum(axis=0) - positives
    weights = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return np.clip(weights, 1.0, cap).astype(np.float32)


def length_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of sentences of similar length: less padding, the same sentences per epoch.

    Sentences are shuffled, cut into chunks of 50 batches, sorted by length inside each
    chunk, batched, and the batches shuffled: most of the speed of sorting, still random.
    """
    order = rng.permutation(len(lengths))
    chunk = batch_size * 50
    batches: list[np.ndarray] = []
    for start in range(0, len(order), chunk):
        part = order[start : start + chunk]
        part = part[np.argsort([lengths[i] for i in part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def fine_tune(
    model: Any,
    texts: Sequence[str],
    matrix: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    head_learning_rate: float,
    warmup: float,
    weight_cap: float,
    max_length: int,
    seed: int,
    dev_score: Callable[[], float] | None = None,
    patience: int = 2,
    show_progress: bool = True,
    progress_label: str = "training",
    mask: np.ndarray | None = None,
) -> list[EpochScore]:
    """Train ``model`` (a SetFitModel with a multitarget SetFitHead) in place; return the epoch curve.

    ``dev_score()`` scores the model as it is (higher is better); with it, the weights of
    the best epoch are restored at the end and training stops after ``patience`` epochs
    without improvement. ``mask`` (0/1, the shape of ``matrix``): cells at 0 do not count in
    the loss, e.g. the categories the task's rule list already labels in a sentence.
    """
    import torch
    from transformers import get_linear_schedule_with_warmup

    from clinsynth.progress import progress_bar

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    body, head = model.model_body, model.model_head
    tokenizer = body.tokenizer
    lengths = [len(t) for t in texts]
    targets = torch.as_tensor(matrix, dtype=torch.float32)
    kept = None if mask is None else torch.as_tensor(mask, dtype=torch.float32)
    weights = torch.as_tensor(positive_weights(matrix, weight_cap, mask))
    criterion = torch.nn.BCEWithLogitsLoss(pos_weight=weights, reduction="none")
    optimizer = torch.optim.AdamW(
        [
            {"params": body.parameters(), "lr": learning_rate},
            {"params": head.parameters(), "lr": head_learning_rate},
        ],
        weight_decay=0.01,
    )
    steps_per_epoch = math.ceil(len(texts) / batch_size)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, int(warmup * steps_per_epoch * epochs), steps_per_epoch * epochs
    )
    curve: list[EpochScore] = []
    best: tuple[float, int, dict[str, Any] | None] = (-math.inf, 0, None)
    # One bar over every epoch's steps, so its ETA is for the whole training (an upper bound:
    # early stopping may end it sooner).
    bar = progress_bar(steps_per_epoch * epochs, progress_label, disable=not show_progress)
    for epoch in range(1, epochs + 1):
        body.train()
        head.train()
        total = 0.0
        batches = length_batches(lengths, batch_size, rng)
        bar.set_postfix_str(f"epoch {epoch}/{epochs}" + (f", best dev {best[0]:.3f}" if curve and dev_score else ""))
        for rows in batches:
            features = tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            embedding = body(dict(features))["sentence_embedding"]
            logits, _ = head(embedding)
            cell_losses = criterion(logits, targets[rows])
            if kept is None:
                loss = cell_losses.mean()
            else:  # the mean over the cells that count
                loss = (cell_losses * kept[rows]).sum() / kept[rows].sum().clamp(min=1.0)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(list(body.parameters()) + list(head.parameters()), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(rows)
            bar.update(1)
        body.eval()
        head.eval()
        score = dev_score() if dev_score is not None else None
        curve.append(EpochScore(epoch, round(total / len(texts), 5), None if score is None else round(score, 5)))
        log.info("epoch %d: loss %.4f dev %s", epoch, total / len(texts), score)
        if score is None:
            continue
        if score > best[0]:
            # Copies of ~90 MB of weights for MiniLM: cheap next to an epoch of training.
            best = (score, epoch, {"body": copy.deepcopy(body.state_dict()), "head": copy.deepcopy(head.state_dict())})
        elif epoch - best[1] >= patience:
            break
    bar.close()
    if best[2] is not None and best[1] != curve[-1].epoch:
        body.load_state_dict(best[2]["body"])
        head.load_state_dict(best[2]["head"])
    return curve

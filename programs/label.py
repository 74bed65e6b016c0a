"""``python -m programs.label``: label corpus sentences (or a file's) with DataToLabel.

Uses the compiled program for the LM (``compiled/data_to_label.<lm>.json``) when there is
one. Writes silver records with provenance and confidence to ``--out`` (JSONL), one
flushed line per record, then the same records as parquet (``<out>.parquet``, an HF
``datasets`` file). An existing output is resumed: ids already there are skipped, never
duplicated. Records whose LM call still fails after retries go to
``<out>.failures.jsonl`` and are retried on the next run.

On the corpus, ``--prefilter`` sends the LM the sentences most similar to the taxonomy's
categories plus a share of random others (``--negatives``), instead of a random sample
that would be almost all NONE.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth import prefilter
from clinsynth.compiled import compiled_path, load_compiled
from clinsynth.config import load_config
from clinsynth.corpus import DEFAULT_CORPUS, iter_sentences
from clinsynth.errors import ClinsynthError
from clinsynth.fingerprint import program_sha256
from clinsynth.gold import held_out_notes
from clinsynth.lm import LMHandle, endpoint_for, lm_name_for, make_lm
from clinsynth.privacy import SOURCE_SENSITIVITY, Sensitivity, check_send
from clinsynth.progress import progress
from clinsynth.records import (
    InputItem,
    Provenance,
    Record,
    ResumableWriter,
    done_ids,
    export_parquet,
    iter_jsonl,
    now_iso,
    read_inputs,
    read_records,
)
from clinsynth.runner import map_with_retries
from clinsynth.taxonomy import DEFAULT_TAXONOMY, Taxonomy, load_taxonomy
from programs.data_to_label import DataToLabel

PROGRAM_NAME = "programs.data_to_label.DataToLabel"
log = logging.getLogger("programs.label")


@dataclass
class LabelSummary:
    labelled: int = 0
    skipped: int = 0
    failed: int = 0
    label_counts: Counter = field(default_factory=Counter)


def corpus_items(
    path: Path = DEFAULT_CORPUS,
    limit: int | None = None,
    sample_seed: int | None = None,
    exclude_notes: set[str] | frozenset[str] = frozenset(),
) -> list[InputItem]:
    """Corpus sentences in corpus order, or a seeded random sample of them (stable for resume).

    ``exclude_notes`` keeps held-out notes (gold dev/test) out of generated training data.
    """
    items = [
        InputItem(id=s.id, text=s.text, note_id=s.note_id, source="corpus")
        for s in iter_sentences(path)
        if s.note_id not in exclude_notes
    ]
    if sample_seed is not None:
        random.Random(sample_seed).shuffle(items)
    return items[:limit] if limit is not None else items


def input_sensitivity(items: list[InputItem], declared: Sensitivity | None, path: Path | None) -> Sensitivity:
    """Gold-marked data is private whatever is declared; unmarked user files default to private."""
    if any(SOURCE_SENSITIVITY.get(i.source or "") is Sensitivity.PRIVATE for i in items):
        return Sensitivity.PRIVATE
    if path is not None and "gold" in Path(path).resolve().parts:
        return Sensitivity.PRIVATE
    if declared is not None:
        return declared
    return Sensitivity.PRIVATE if path is not None else Sensitivity.PUBLIC


def load_program(taxonomy: Taxonomy, program_path: Path | None, samples: int = 1) -> DataToLabel:
    """DataToLabel, zero-shot or with a compiled program's state (checked against the taxonomy)."""
    program = DataToLabel(taxonomy, samples=samples)
    if program_path is not None:
        load_compiled(program, program_path, taxonomy)
    return program


def label_items(
    items: list[InputItem],
    program: DataToLabel,
    handle: LMHandle,
    out: Path,
    seed: int = 0,
    attempts: int = 3,
    show_progress: bool = True,
    threads: int = 1,
    item_attributes: dict[str, dict[str, Any]] | None = None,
) -> LabelSummary:
    """Label ``items`` into ``out``, resuming; returns counts for the summary table.

    Each record is written as soon as its answer arrives (in completion order when
    ``threads`` > 1), so a killed run loses at most the requests in flight.
    """
    taxonomy = program.taxonomy
    digest = program_sha256(program, taxonomy.guideline_text)
    failures_path = out.with_name(out.name + ".failures.jsonl")
    summary = LabelSummary()
    item_attributes = item_attributes or {}
    spent = attempts_spent(failures_path)  # before the file is truncated for this run
    with ResumableWriter(out) as writer, failures_path.open("w", encoding="utf-8") as failures:
        todo = [i for i in items if i.id not in writer.done]
        summary.skipped = len(items) - len(todo)
        stream = map_with_retries(
            lambda item: program(sentence=item.text),
            todo,
            handle,
            attempts,
            threads,
            rollout_base=lambda item: spent.get(item.id, 0),
        )
        for item, result in progress(stream, desc="labelling", disable=not show_progress, total=len(todo)):
            if not result.ok:
                summary.failed += 1
                failure = {
                    "id": item.id,
                    "text": item.text,
                    "error": result.error,
                    "attempts": result.attempts + spent.get(item.id, 0),  # over all runs
                    "at": now_iso(),
                }
                failures.write(json.dumps(failure) + "\n")
                failures.flush()
                continue
            pred = result.value
            labels = list(pred.categories)
            attributes = {"attempts": result.attempts, **item_attributes.get(item.id, {})}
            if pred.confidence_method:
                attributes["confidence_method"] = pred.confidence_method
            writer.write(
                Record(
                    id=item.id,
                    text=item.text,
                    labels=labels,
                    source="silver",
                    note_id=item.note_id,
                    provenance=Provenance(
                        lm=handle.name,
                        program=PROGRAM_NAME,
                        program_sha256=digest,
                        seed=seed,
                        confidence=None if pred.confidence is None else round(float(pred.confidence), 4),
                        attributes=attributes,
                    ),
                )
            )
            summary.labelled += 1
            summary.label_counts.update(labels or ["NONE"])
    if summary.failed == 0:
        failures_path.unlink(missing_ok=True)
    return summary


def attempts_spent(failures_path: Path) -> dict[str, int]:
    """Attempts earlier runs spent on records that failed (their rollouts are cached)."""
    if not failures_path.exists():
        return {}
    spent: dict[str, int] = {}
    for _, obj in iter_jsonl(failures_path):
        if isinstance(obj, dict) and isinstance(obj.get("id"), str):
            spent[obj["id"]] = int(obj.get("attempts") or 0)
    return spent


def prefiltered_items(
    items: list[InputItem], taxonomy: Taxonomy, n: int, negatives: float, seed: int, pool: int | None
) -> tuple[list[InputItem], dict[str, dict[str, Any]]]:
    """The prefilter's selection and, per id, what it recorded (score, nearest category, negative)."""
    from clinsynth.embeddings import encode_cached

    if pool is not None and pool < len(items):
        items = random.Random(seed).sample(items, pool)
    selection = prefilter.select(items, taxonomy, n, encode_cached, negative_fraction=negatives, seed=seed)
    attributes = {
        i.id: {
            "prefilter_score": round(selection.scores[i.id], 4),
            "prefilter_nearest": selection.nearest[i.id],
            "sampled_negative": i.id not in selection.relevant,
        }
        for i in selection.items
    }
    return selection.items, attributes


def default_program_path(lm_name: str) -> Path | None:
    path = compiled_path("data_to_label", lm_name)
    return path if path.exists() else None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m programs.label", description=__doc__.splitlines()[0])
    p.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    p.add_argument("--api-base", default=None, help="base URL for OpenAI-compatible servers (vLLM...)")
    p.add_argument("--input", type=Path, default=None, help="JSONL (text, id?), CSV (text column) or TXT")
    p.add_argument("--out", type=Path, required=True, help="output JSONL (resumed if it exists)")
    p.add_argument("--limit", type=int, default=None, help="label at most N sentences")
    p.add_argument(
        "--program", type=Path, default=None, help="compiled program JSON (default: compiled/data_to_label.<lm>.json)"
    )
    p.add_argument("--zero-shot", action="store_true", help="ignore compiled programs")
    p.add_argument("--samples", type=int, default=1, help="k > 1: confidence = agreement of k answers (k x cost)")
    p.add_argument("--threads", type=int, default=1, help="parallel requests, for endpoints that serve several")
    p.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="public corpus (when no --input)")
    p.add_argument("--prefilter", action="store_true", help="corpus: pick sentences similar to the categories")
    p.add_argument("--negatives", type=float, default=0.2, help="prefilter: share of random other sentences")
    p.add_argument("--pool", type=int, default=None, help="prefilter: score a random pool of N sentences only")
    p.add_argument(
        "--sensitivity",
        choices=[s.value for s in Sensitivity],
        default=None,
        help="sensitivity of --input (default: private; gold is always private)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attempts", type=int, default=3, help="tries per sentence before recording a failure")
    p.add_argument("--no-parquet", action="store_true", help="do not write <out>.parquet")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        attributes: dict[str, dict[str, Any]] = {}
        if args.input is not None:
            items = read_inputs(args.input)[: args.limit]
            data_name = str(args.input)
        elif args.prefilter:
            pool = corpus_items(args.corpus, exclude_notes=held_out_notes())
            n = args.limit or len(pool)
            items, attributes = prefiltered_items(pool, taxonomy, n, args.negatives, args.seed, args.pool)
            data_name = f"public corpus {args.corpus}"
        else:
            items = corpus_items(args.corpus, limit=args.limit)
            data_name = f"public corpus {args.corpus}"
        declared = Sensitivity(args.sensitivity) if args.sensitivity else None
        sensitivity = input_sensitivity(items, declared, args.input)
        endpoint = endpoint_for(args.lm, args.api_base)
        # The gate is checked before any server starts or anything is sent.
        check_send(data_name, sensitivity, endpoint, load_config())
        program_path = None if args.zero_shot else args.program or default_program_path(lm_name_for(args.lm))
        program = load_program(taxonomy, program_path, samples=args.samples)
        if not {i.id for i in items} - done_ids(args.out):
            print(f"{args.out}: all {len(items)} sentences already labelled; nothing to do")
            return 0
        handle = make_lm(args.lm, api_base=args.api_base)
        print(f"program: {program_path or 'zero-shot'}; lm: {handle.name}", file=sys.stderr)
        summary = label_items(
            items,
            program,
            handle,
            args.out,
            seed=args.seed,
            attempts=args.attempts,
            show_progress=not args.no_progress,
            threads=args.threads,
            item_attributes=attributes,
        )
        if not args.no_parquet and args.out.exists():
            export_parquet(read_records(args.out, taxonomy), args.out.with_suffix(".parquet"))
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.out}: labelled {summary.labelled}, already done {summary.skipped}, "
        f"failed {summary.failed} (lm {handle.name})"
    )
    for name, n in summary.label_counts.most_common():
        print(f"  {name:<28} {n}")
    return 1 if summary.failed and summary.labelled == 0 else 0


if __name__ == "__main__":
    sys.exit(main())

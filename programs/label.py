"""``python -m programs.label``: label corpus sentences (or a file's) with DataToLabel.

Writes silver records with provenance to ``--out`` (JSONL), one flushed line per record.
An existing output is resumed: ids already there are skipped, never duplicated. Records
whose LM call still fails after retries go to ``<out>.failures.jsonl`` and are retried on
the next run.
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

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth.config import load_config
from clinsynth.corpus import DEFAULT_CORPUS, iter_sentences
from clinsynth.errors import ClinsynthError
from clinsynth.fingerprint import program_sha256
from clinsynth.lm import LMHandle, endpoint_for, make_lm
from clinsynth.privacy import SOURCE_SENSITIVITY, Sensitivity, check_send
from clinsynth.progress import progress
from clinsynth.records import InputItem, Provenance, Record, ResumableWriter, done_ids, now_iso, read_inputs
from clinsynth.runner import call_with_retries
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


def load_program(taxonomy: Taxonomy, program_path: Path | None) -> DataToLabel:
    program = DataToLabel(taxonomy)
    if program_path is not None:
        if not program_path.exists():
            raise ClinsynthError(f"{program_path}: compiled program not found")
        program.load(str(program_path))
    return program


def label_items(
    items: list[InputItem],
    program: DataToLabel,
    handle: LMHandle,
    out: Path,
    seed: int = 0,
    attempts: int = 3,
    show_progress: bool = True,
) -> LabelSummary:
    """Label ``items`` into ``out``, resuming; returns counts for the summary table."""
    taxonomy = program.taxonomy
    digest = program_sha256(program, taxonomy.guideline_text)
    failures_path = out.with_name(out.name + ".failures.jsonl")
    summary = LabelSummary()
    with ResumableWriter(out) as writer, failures_path.open("w", encoding="utf-8") as failures:
        todo = [i for i in items if i.id not in writer.done]
        summary.skipped = len(items) - len(todo)
        ctx = handle.context()
        with ctx:
            for item in progress(todo, desc="labelling", disable=not show_progress):
                result = call_with_retries(lambda text=item.text: program(sentence=text), handle.lm, attempts)
                if not result.ok:
                    summary.failed += 1
                    failures.write(
                        json.dumps(
                            {
                                "id": item.id,
                                "text": item.text,
                                "error": result.error,
                                "attempts": result.attempts,
                                "at": now_iso(),
                            }
                        )
                        + "\n"
                    )
                    failures.flush()
                    continue
                labels = list(result.value.categories)
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
                            attributes={"attempts": result.attempts},
                        ),
                    )
                )
                summary.labelled += 1
                summary.label_counts.update(labels or ["NONE"])
    if summary.failed == 0:
        failures_path.unlink(missing_ok=True)
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m programs.label", description=__doc__.splitlines()[0])
    p.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    p.add_argument("--api-base", default=None, help="base URL for OpenAI-compatible servers (vLLM...)")
    p.add_argument("--input", type=Path, default=None, help="JSONL (text, id?), CSV (text column) or TXT")
    p.add_argument("--out", type=Path, required=True, help="output JSONL (resumed if it exists)")
    p.add_argument("--limit", type=int, default=None, help="label at most N sentences")
    p.add_argument("--program", type=Path, default=None, help="compiled program JSON to load")
    p.add_argument("--taxonomy", type=Path, default=DEFAULT_TAXONOMY)
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="public corpus (when no --input)")
    p.add_argument(
        "--sensitivity",
        choices=[s.value for s in Sensitivity],
        default=None,
        help="sensitivity of --input (default: private; gold is always private)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--attempts", type=int, default=3, help="tries per sentence before recording a failure")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        if args.input is not None:
            items = read_inputs(args.input)[: args.limit]
            data_name = str(args.input)
        else:
            items = corpus_items(args.corpus, limit=args.limit)
            data_name = f"public corpus {args.corpus}"
        declared = Sensitivity(args.sensitivity) if args.sensitivity else None
        sensitivity = input_sensitivity(items, declared, args.input)
        program = load_program(taxonomy, args.program)
        # The gate is checked before any server starts or anything is sent.
        check_send(data_name, sensitivity, endpoint_for(args.lm, args.api_base), load_config())
        if not {i.id for i in items} - done_ids(args.out):
            print(f"{args.out}: all {len(items)} sentences already labelled; nothing to do")
            return 0
        handle = make_lm(args.lm, api_base=args.api_base)
        summary = label_items(
            items, program, handle, args.out, seed=args.seed, attempts=args.attempts, show_progress=not args.no_progress
        )
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

"""The ``clinsynth`` command: the main job (``run``) and a front door to every tool."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth.errors import ClinsynthError
from clinsynth.paths import OUTPUT_DIR


def cmd_run(args: argparse.Namespace) -> int:
    """The pipeline on embedded defaults: today, silver labelling of a corpus sample with the compiled program."""
    from clinsynth.gold import held_out_notes
    from clinsynth.lm import make_lm
    from clinsynth.report import format_table
    from clinsynth.taxonomy import load_taxonomy
    from programs.label import corpus_items, default_program_path, label_items, load_program

    started = time.monotonic()
    out_dir = Path(args.out_dir)
    taxonomy = load_taxonomy()
    items = corpus_items(limit=args.limit, sample_seed=args.seed, exclude_notes=held_out_notes())
    print(f"[1/2] {len(items)} public-corpus sentences sampled (seed {args.seed}, gold dev/test notes excluded)")
    handle = make_lm(args.lm, api_base=args.api_base)
    program_path = default_program_path(handle.name)
    program = load_program(taxonomy, program_path)
    silver = out_dir / "silver.jsonl"
    print(f"[2/2] labelling with {handle.name}, program {program_path or 'zero-shot'} -> {silver}")
    summary = label_items(items, program, handle, silver, seed=args.seed)
    rows = [
        ["labelled now", summary.labelled],
        ["already done (resumed)", summary.skipped],
        ["failed (see .failures.jsonl)", summary.failed],
    ]
    rows += [[f"label {name}", n] for name, n in summary.label_counts.most_common()]
    rows.append(["mean confidence", _mean_confidence(silver)])
    print()
    print(format_table(["silver run", "count"], rows))
    print(f"\ndone in {time.monotonic() - started:.0f} s; outputs in {out_dir}")
    attempted = summary.labelled + summary.failed
    return 1 if attempted and summary.labelled == 0 else 0  # failures are recorded; only total failure fails


def _mean_confidence(path: Path) -> float | str:
    from clinsynth.records import read_records

    values = [r.provenance.confidence for r in read_records(path) if r.provenance and r.provenance.confidence]
    return sum(values) / len(values) if values else "-"


def cmd_corpus(args: argparse.Namespace) -> int:
    from clinsynth.corpus import DEFAULT_CORPUS, corpus_stats

    path = Path(args.path) if args.path else DEFAULT_CORPUS
    stats = corpus_stats(path)
    print(f"{path}: {stats['notes']} notes (deduplicated by transcription), {stats['sentences']} sentences")
    return 0


def cmd_taxonomy(args: argparse.Namespace) -> int:
    from clinsynth.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

    taxonomy = load_taxonomy(args.path or DEFAULT_TAXONOMY)
    print(taxonomy.guideline_text)
    return 0


def cmd_label(argv: list[str]) -> int:
    from programs.label import main as label_main

    return label_main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clinsynth", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the main job end to end on the embedded defaults")
    run.add_argument("--lm", default="local", help="'local' (embedded) or a litellm model string")
    run.add_argument("--api-base", default=None)
    run.add_argument("--limit", type=int, default=20, help="corpus sentences to label")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--out-dir", default=str(OUTPUT_DIR / "run"))
    run.set_defaults(func=cmd_run)

    corpus = sub.add_parser("corpus", help="read the public corpus and print note/sentence counts")
    corpus.add_argument("--path", default=None)
    corpus.set_defaults(func=cmd_corpus)

    taxonomy = sub.add_parser("taxonomy", help="validate a taxonomy file and print its guideline text")
    taxonomy.add_argument("--path", default=None)
    taxonomy.set_defaults(func=cmd_taxonomy)

    sub.add_parser("label", help="label sentences (same options as python -m programs.label)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "label":
        return cmd_label(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

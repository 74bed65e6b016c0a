"""Benchmark: naive zero-shot labeller vs the compiled one, side by side on the same sentences.

Prints, for each system: prompt tokens sent per sentence (and how many of them the server
served from its prefix cache, when it says), completion tokens per sentence, sentences
per second after warm-up, and micro/binary F1 on those sentences.

    python benchmarks/labeler_cost.py --lm local --n 40

"naive" is the uncompiled program with DSPy's stock JSONAdapter (whose per-call
reminder repeats every label name after the sentence, so it is not cached); "compiled"
is ``compiled/data_to_label.<lm>.json`` with the prefix-caching adapter. Gold dev
sentences are used (private: the privacy gate applies to remote LMs). DSPy's cache is
off so every call is real.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import clinsynth  # noqa: F401  (offline environment before dspy)
from clinsynth.compiled import compiled_path, load_compiled
from clinsynth.config import load_config
from clinsynth.gold import SENSITIVITY, load_gold, split_path
from clinsynth.lm import endpoint_for, lm_name_for, make_lm
from clinsynth.metrics import multilabel_scores
from clinsynth.privacy import check_send
from clinsynth.report import format_table
from clinsynth.runner import call_with_retries
from clinsynth.taxonomy import load_taxonomy
from programs.data_to_label import DataToLabel


def usage_totals(history: list[dict]) -> tuple[int, int, int]:
    prompt = completion = cached = 0
    for entry in history:
        usage = entry.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached += int((details.get("cached_tokens") if isinstance(details, dict) else 0) or 0)
    return prompt, completion, cached


def run_system(name: str, program: DataToLabel, adapter: str, args: argparse.Namespace, records: list) -> list:
    handle = make_lm(args.lm, api_base=args.api_base, adapter=adapter, cache=False)
    with handle.context():
        call_with_retries(lambda: program(sentence=records[0].text), handle.lm)  # warm-up: fills the prefix cache
    handle.lm.history.clear()
    predicted, started = [], time.monotonic()
    with handle.context():
        for r in records:
            result = call_with_retries(lambda t=r.text: program(sentence=t), handle.lm)
            predicted.append(list(result.value.categories) if result.ok else [])
    seconds = time.monotonic() - started
    prompt, completion, cached = usage_totals(handle.lm.history)
    scores = multilabel_scores([r.labels for r in records], predicted, program.taxonomy)
    n = len(records)
    return [
        name,
        prompt / n,
        (prompt - cached) / n if cached else "-",
        completion / n,
        n / seconds,
        scores["micro_f1"],
        scores["binary_f1"],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lm", default="local")
    p.add_argument("--api-base", default=None)
    p.add_argument("--n", type=int, default=40, help="gold dev sentences")
    p.add_argument("--program", type=Path, default=None, help="compiled program (default for the LM)")
    args = p.parse_args(argv)
    taxonomy = load_taxonomy()
    records = load_gold(taxonomy=taxonomy)["dev"][-args.n :]  # the tail: not the sentences compile scored
    check_send(str(split_path("dev")), SENSITIVITY, endpoint_for(args.lm, args.api_base), load_config())
    lm_name = lm_name_for(args.lm)
    path = args.program or compiled_path("data_to_label", lm_name)
    compiled = load_compiled(DataToLabel(taxonomy), path, taxonomy)
    rows = [
        run_system("naive zero-shot", DataToLabel(taxonomy), "json-full", args, records),
        run_system(f"compiled ({path.name})", compiled, "json", args, records),
    ]
    print(f"LM {lm_name}, {len(records)} gold dev sentences")
    headers = ["system", "prompt tok/sent", "uncached tok/sent", "completion tok/sent", "sent/s"]
    print(format_table([*headers, "micro F1", "binary F1"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

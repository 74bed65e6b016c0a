"""Benchmark: naive zero-shot labeller vs the compiled one, side by side on the same sentences.

Prints, for each system: prompt tokens sent per sentence (and how many of them the server
served from its prefix cache, when it says), completion tokens per sentence, sentences
per second after warm-up, and micro/binary F1 on those sentences.

    python benchmarks/labeler_cost.py --lm local --n 40

"naive" is the uncompiled program with DSPy's stock JSONAdapter (whose per-call
reminder repeats every label name after the sentence, so it is not cached); "compiled"
is the task's compiled labeller for the LM (``tasks/ad_signs/compiled/data_to_label.<lm>.json``) with the
prefix-caching adapter, and each of its variants (``data_to_label.<variant>.<lm>.json``, e.g.
the per-category ``decisions`` labeller) likewise. A decisions labeller's thresholds were
fitted on gold dev, so its F1 here is optimistic; its cost columns are what this measures.
Gold dev sentences are used: the LM (the task's ``labeler`` role) is opened through the
privacy session with gold dev and every program declared, so a remote endpoint must be
approved. DSPy's cache is off so every call is real.
"""

from __future__ import annotations

from clinsynth.env import apply_environment_defaults

apply_environment_defaults()  # a command: the offline environment before the imports below load dspy

import argparse
import sys
from pathlib import Path
from typing import Any

from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.labellers import load_labeller
from clinsynth.programs.scoring import score_labeller

from clinsynth.data.privacy import Sensitivity
from clinsynth.data.task import LMSpec, Task, load_task
from clinsynth.errors import ClinsynthError
from clinsynth.jobs.runner import call_with_retries
from clinsynth.llm.compiled import compiled_variants, default_compiled
from clinsynth.llm.lm import lm_name_for
from clinsynth.llm.session import Content, open_lm
from clinsynth.report import format_table

ROLE = "labeler"


def usage_totals(history: list[dict]) -> tuple[int, int, int]:
    prompt = completion = cached = 0
    for entry in history:
        usage = entry.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
        details = usage.get("prompt_tokens_details") or {}
        cached += int((details.get("cached_tokens") if isinstance(details, dict) else 0) or 0)
    return prompt, completion, cached


def run_system(
    name: str,
    program: DataToLabel,
    adapter: str,
    task: Task,
    spec: LMSpec,
    records: list,
    declared: list[Content],
    compared: dict[str, Any],
    handle: Any = None,
) -> list:
    """One system's row: a warm-up call, then every sentence once, scored like compile scores (``score_labeller``)."""
    if handle is None:
        # Every compared program is declared each time: the first system's check already
        # covers the second's demos, before any sentence is sent.
        handle = open_lm(
            spec, ROLE, task.privacy, declared, compared, env_folders=[task.root], adapter=adapter, cache=False
        )
    with handle.context():
        call_with_retries(lambda: program(sentence=records[0].text), handle.lm)  # warm-up: fills the prefix cache
    handle.lm.history.clear()
    run = score_labeller(program, records, handle, threads=1, show_progress=False)
    prompt, completion, cached = usage_totals(handle.lm.history)
    n = len(records)
    return [
        name,
        prompt / n,
        (prompt - cached) / n if cached else "-",
        completion / n,
        n / run.seconds if run.seconds else "-",
        run.scores["micro_f1"],
        run.scores["binary_f1"],
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--task", type=Path, default=None, help="task folder (default: $CLINSYNTH_TASK, else tasks/ad_signs)"
    )
    p.add_argument("--lm", default=None, help="'local' or a litellm model string (default: the task's labeler)")
    p.add_argument("--api-base", default=None, help="base URL for a self-hosted OpenAI-compatible server")
    p.add_argument("--n", type=int, default=40, help="the last N gold dev sentences (default 40)")
    p.add_argument("--program", type=Path, default=None, help="compiled program (default: the task's for the LM)")
    args = p.parse_args(argv)
    try:
        task = load_task(args.task)
        spec = (
            task.lm(ROLE)
            if args.lm is None and args.api_base is None
            else LMSpec(model=args.lm or task.lm(ROLE).model, api_base=args.api_base)
        )
        taxonomy = task.taxonomy
        records = task.gold()["dev"][-args.n :]  # the tail: not the sentences compile scored
        path = args.program or default_compiled(task, "data_to_label", spec)
        if path is None:
            raise ClinsynthError(
                f"no compiled data_to_label program for {spec.model} in {task.compiled_dir}: "
                "compile one (python -m programs.compile) or pass --program"
            )
        paths = {f"compiled ({path.name})": path}
        if args.program is None:
            variants = compiled_variants(task, "data_to_label", spec)
            paths.update({f"{name} ({p.name})": p for name, p in variants.items()})
        naive = DataToLabel(taxonomy)
        declared = [Content(f"gold dev ({task.relative(task.split_path('dev'))})", Sensitivity.PRIVATE)]
        compared = {"naive zero-shot": naive, **{name: load_labeller(taxonomy, p) for name, p in paths.items()}}
        rows = [
            run_system(name, program, "json-full" if program is naive else "json", task, spec, records, declared,
                       compared)
            for name, program in compared.items()
        ]  # fmt: skip
    except ClinsynthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"LM {lm_name_for(spec.model)}, {len(records)} gold dev sentences")
    headers = ["system", "prompt tok/sent", "uncached tok/sent", "completion tok/sent", "sent/s"]
    print(format_table([*headers, "micro F1", "binary F1"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

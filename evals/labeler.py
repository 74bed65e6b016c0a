"""Suite ``labeler``: data-to-label quality on a gold split, zero-shot vs compiled programs.

Scores per category (F1), micro/macro, binary (any vs NONE), multi-class, and counts
answers that stayed unparseable after retries. Writes ``reports/labeler.json`` and
``reports/labeler.md``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clinsynth.config import load_config
from clinsynth.gold import SENSITIVITY, load_gold, split_path
from clinsynth.lm import LMHandle, endpoint_for, make_lm
from clinsynth.privacy import check_send
from clinsynth.report import format_table
from clinsynth.runner import run_all
from clinsynth.taxonomy import Taxonomy, load_taxonomy
from evals.core import Result, Solver, Task, evaluate
from programs.label import default_program_path, load_program

REPORT_DIR = Path("reports")


def gold_task(split: str, taxonomy: Taxonomy, limit: int | None = None) -> Task:
    records = load_gold(taxonomy=taxonomy)[split]
    return Task(name=f"gold-{split}", records=tuple(records[:limit] if limit else records))


def program_solver(
    name: str, taxonomy: Taxonomy, handle: LMHandle, program_path: Path | None, threads: int = 1
) -> Solver:
    program = load_program(taxonomy, program_path)

    def solve(texts: Sequence[str]) -> list[list[str] | None]:
        results = run_all(lambda t: program(sentence=t), list(texts), handle, threads=threads, desc=name)
        solver.details[:] = [
            {"confidence": r.value.confidence if r.ok else None, "attempts": r.attempts} for r in results
        ]
        return [list(r.value.categories) if r.ok else None for r in results]

    solver = Solver(name=name, solve=solve, description=str(program_path or "zero-shot"))
    return solver


def confidence_table(result: Result, thresholds: Sequence[float] = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95)) -> list[list]:
    """Kept share, exact-match accuracy and micro precision of the answers at or above each confidence."""
    rows = []
    for t in thresholds:
        kept = [p for p in result.predictions if p.get("confidence") is not None and p["confidence"] >= t]
        if not kept:
            continue
        exact = sum(set(p["gold"]) == set(p["predicted"] or []) for p in kept) / len(kept)
        tp = sum(len(set(p["gold"]) & set(p["predicted"] or [])) for p in kept)
        predicted = sum(len(p["predicted"] or []) for p in kept)
        precision = tp / predicted if predicted else "-"
        rows.append([f">= {t}", len(kept), len(kept) / len(result.predictions), exact, precision])
    return rows


def render(results: list[Result], taxonomy: Taxonomy, lm_name: str, command: str) -> str:
    lines = [
        "# Labeler quality",
        "",
        f"LM: `{lm_name}`; task: `{results[0].task}` ({results[0].scores['n']} sentences).",
        f"Command: `{command}`",
        "",
    ]
    rows = [
        [
            r.solver,
            r.scores["micro_f1"],
            r.scores["macro_f1"],
            r.scores["binary_f1"],
            r.scores["multiclass_accuracy"],
            r.scores["exact_match"],
            r.failed,
            r.seconds / max(1, r.scores["n"]),
        ]
        for r in results
    ]
    lines.append(
        format_table(
            [
                "system",
                "micro F1",
                "macro F1",
                "binary F1",
                "multi-class acc",
                "exact match",
                "unparseable",
                "s/sentence",
            ],
            rows,
        )
    )
    lines += ["", "## Per-category F1", ""]
    headers = ["category", "support", *[r.solver for r in results]]
    cat_rows = []
    for name in taxonomy.names:
        support = results[0].scores["per_category"][name]["support"]
        cells = [r.scores["per_category"][name]["f1"] for r in results]
        cat_rows.append([name, support, *["-" if c is None else c for c in cells]])
    lines.append(format_table(headers, cat_rows))
    for r in results:
        rows = confidence_table(r)
        if rows:
            lines += ["", f"## Confidence of `{r.solver}` answers", ""]
            lines.append(format_table(["confidence", "sentences", "share", "exact match", "micro precision"], rows))
    retried = {r.solver: sum(p.get("attempts", 1) > 1 for p in r.predictions) for r in results}
    lines += [
        "",
        "Unparseable answers (after retries) count as NONE in the scores; answers that needed a retry: "
        + ", ".join(f"{k} {v}" for k, v in retried.items())
        + ". Confidence is the probability the LM gave to its label list (token logprobs). "
        "s/sentence includes DSPy cache hits on reruns.",
    ]
    return "\n".join(lines) + "\n"


def run(
    lm: str = "local",
    api_base: str | None = None,
    split: str = "test",
    limit: int | None = None,
    programs: dict[str, Path | None] | None = None,
    out_dir: Path = REPORT_DIR,
    command: str = "",
    threads: int = 1,
) -> list[Result]:
    taxonomy = load_taxonomy()
    task = gold_task(split, taxonomy, limit)
    check_send(str(split_path(split)), SENSITIVITY, endpoint_for(lm, api_base), load_config())
    handle = make_lm(lm, api_base=api_base)
    if programs is None:
        programs = {"zero-shot": None}
        if (default := default_program_path(handle.name)) is not None:
            programs["compiled"] = default
    results = [
        evaluate(task, program_solver(name, taxonomy, handle, path, threads), taxonomy)
        for name, path in programs.items()
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"lm": handle.name, "task": task.name, "command": command, "results": [r.__dict__ for r in results]}
    (out_dir / "labeler.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "labeler.md").write_text(render(results, taxonomy, handle.name, command))
    return results

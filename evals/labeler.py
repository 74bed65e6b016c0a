"""Suite ``labeler``: data-to-label quality on a gold split, zero-shot vs compiled programs.

Scores per category (F1), micro/macro, binary (any vs NONE), multi-class, and counts
answers that stayed unparseable after retries. Writes ``labeler.json`` and ``labeler.md``
to the task's reports folder (or ``out_dir``).

The LM is the task's ``labeler`` role, opened through the privacy session: the gold split
is declared private and so is every compared program with gold demos.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clinsynth.evals.core import EvalSet, Result
from clinsynth.programs.data_to_label import DataToLabel
from clinsynth.programs.labellers import load_labeller
from clinsynth.programs.scoring import score_labeller

from clinsynth.data.gold import load_gold
from clinsynth.data.privacy import Sensitivity
from clinsynth.data.task import LMSpec, Task
from clinsynth.data.taxonomy import Taxonomy
from clinsynth.llm.compiled import compiled_variants, default_compiled
from clinsynth.llm.lm import LMHandle
from clinsynth.llm.session import Content, admit, open_lm
from clinsynth.report import format_table

ROLE = "labeler"


def gold_task(split: str, taxonomy: Taxonomy, gold_dir: Path, limit: int | None = None) -> EvalSet:
    """The first ``limit`` sentences of a gold split (all splits are read: they are checked against each other)."""
    records = load_gold(gold_dir, taxonomy)[split]
    return EvalSet(name=f"gold-{split}", records=tuple(records[:limit] if limit else records))


def load_programs(taxonomy: Taxonomy, paths: dict[str, Path | None]) -> dict[str, DataToLabel]:
    """DataToLabel per name: zero-shot for None, else the compiled program (checked against the taxonomy)."""
    programs = {}
    for name, path in paths.items():
        programs[name] = load_labeller(taxonomy, path)
    return programs


def program_result(name: str, task: EvalSet, program: DataToLabel, handle: LMHandle, threads: int = 1) -> Result:
    """Score ``program`` on the task's sentences (``programs.scoring.score_labeller``) as an eval Result."""
    run = score_labeller(program, task.records, handle, threads=threads, desc=name)
    return Result(
        solver=name,
        task=task.name,
        scores=run.scores,
        failed=run.failed,
        seconds=run.seconds,
        predictions=[
            {
                "id": r.id,
                "gold": list(r.labels),
                "predicted": p,
                "confidence": a.value.confidence if a.ok else None,
                "attempts": a.attempts,
            }
            for r, p, a in zip(task.records, run.predicted, run.attempts, strict=True)
        ],
    )


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
    task: Task,
    lm: LMSpec | None = None,
    split: str = "test",
    limit: int | None = None,
    programs: dict[str, Path | None] | None = None,
    out_dir: Path | None = None,
    command: str = "",
    threads: int = 1,
    handle: LMHandle | None = None,
) -> list[Result]:
    """Compare ``programs`` (name -> compiled path, None = zero-shot) on a gold split of ``task``.

    The LM is ``lm``, else the task's labeller. Default programs: zero-shot and the
    task's compiled labeller for the LM, if any, and its variants (``clinsynth.llm.compiled.compiled_variants``,
    e.g. ``decisions`` for ``data_to_label.decisions.local.json``). ``handle`` replaces the session's LM
    (tests); without one the LM is opened for the ``labeler`` role after the privacy
    check on the split and the programs. Reports go to ``out_dir`` (default: the task's).
    """
    taxonomy = task.taxonomy
    spec = lm or task.lm(ROLE)
    eval_task = gold_task(split, taxonomy, task.gold_dir, limit)
    if programs is None:
        programs = {"zero-shot": None}
        if (default := default_compiled(task, "data_to_label", spec)) is not None:
            programs["compiled"] = default
        programs.update(compiled_variants(task, "data_to_label", spec))
    loaded = load_programs(taxonomy, programs)
    if handle is None:
        data = [Content(f"gold {split} ({task.relative(task.split_path(split))})", Sensitivity.PRIVATE)]
        handle = open_lm(spec, ROLE, task.privacy, data, loaded, env_folders=[task.root])
    else:
        for name, program in loaded.items():
            admit(handle, name, program)
    results = [program_result(name, eval_task, program, handle, threads) for name, program in loaded.items()]
    out_dir = out_dir or task.reports_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"lm": handle.name, "task": eval_task.name, "command": command, "results": [r.__dict__ for r in results]}
    (out_dir / "labeler.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "labeler.md").write_text(render(results, taxonomy, handle.name, command))
    return results

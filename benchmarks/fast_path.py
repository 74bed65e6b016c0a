"""Benchmark: today's torch path vs the ONNX fast path (fp32, int8), side by side in one run.

Each path runs in its own subprocess, so each one's peak resident memory (``ru_maxrss``:
torch, onnxruntime and the weights, which tracemalloc cannot see) is its own. Every path
predicts the same N public-corpus sentences (the first N, as ``classifier_speed.py``)
after a warm-up batch, and labels gold test for micro / macro F1 with the model's own
thresholds. The ONNX export is made first if the model has none (``clinsynth export-onnx
--quantize``). The table is written into ``benchmarks/results.md`` under its own heading;
the file's other sections are kept.

    python benchmarks/fast_path.py --n 2000 --repeat 3
"""

from __future__ import annotations

from clinsynth.env import apply_environment_defaults

apply_environment_defaults()  # a command: the offline environment before the imports below load dspy

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from clinsynth.data.corpus import iter_sentences
from clinsynth.data.records import now_iso
from clinsynth.data.task import load_task
from clinsynth.report import format_table, write_section

HEADING = "## Fast inference path: torch vs ONNX Runtime"
PATHS = {"torch": ("torch", None), "onnx-fp32": ("onnx", "fp32"), "onnx-int8": ("onnx", "int8")}
GOAL = 1000  # sentences/s on 2 cores (issue #17)
WARMUP = 64


def worker(args: argparse.Namespace) -> int:
    """One path in this process: load, warm up, time N sentences, score gold test; JSON on stdout."""
    from clinsynth.model.metrics import multilabel_scores
    from clinsynth.model.onnx_path import load_classifier

    task = load_task(args.task)
    texts = [s.text for _, s in zip(range(args.n), iter_sentences(task.corpus), strict=False)]
    backend, variant = PATHS[args.worker]
    started = time.perf_counter()
    classifier, used = load_classifier(args.model, backend=backend, variant=variant)
    load_seconds = time.perf_counter() - started
    classifier.predict(texts[:WARMUP])
    # Best of a few runs: other jobs on the machine only ever slow a run down. CPU seconds of
    # this process (all its threads) are less sensitive to them than wall time.
    seconds, cpu_seconds = float("inf"), float("inf")
    for _ in range(args.repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        classifier.predict(texts)
        seconds = min(seconds, time.perf_counter() - started)
        cpu_seconds = min(cpu_seconds, time.process_time() - cpu_started)
    test = task.gold(("test",))["test"]
    scores = multilabel_scores([r.labels for r in test], classifier.predict([r.text for r in test]), task.taxonomy)
    peak_mb = peak_rss_mb()
    result = {
        "path": args.worker,
        "backend": used,
        "sentences": len(texts),
        "rate": len(texts) / seconds,
        "cpu_ms": 1000 * cpu_seconds / len(texts),
        "load_seconds": load_seconds,
        "peak_rss_mb": peak_mb,
        "torch_imported": "torch" in sys.modules,
        "micro_f1": scores["micro_f1"],
        "macro_f1": scores["macro_f1"],
    }
    print(json.dumps(result))
    return 0


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM belongs to the address space, so it starts afresh at
    exec; ru_maxrss does not (a worker forked from a parent holding torch would report the parent's peak)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_path(name: str, args: argparse.Namespace, model_dir: Path) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--n", str(args.n), "--repeat", str(args.repeat)]
    command += ["--model", str(model_dir)]
    if args.task:
        command += ["--task", str(args.task)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="corpus sentences to predict")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per path; the best one counts")
    p.add_argument("--model", type=Path, default=None, help="model directory (default: the task's default model)")
    p.add_argument("--task", type=Path, default=None, help="task folder (default: the bundled AD task)")
    p.add_argument("--out", type=Path, default=None, help="report (default: <task reports>/benchmarks.md)")
    p.add_argument("--note", default="", help="a line under the table, e.g. that the machine was busy")
    p.add_argument("--worker", choices=tuple(PATHS), default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    from clinsynth.app.export_onnx import ExportOnnxConfig, export_onnx
    from clinsynth.model.onnx_path import MAX_INT8_DEV_LOSS, export_problem, read_manifest
    from clinsynth.model.train import ensure_default_model

    task = load_task(args.task)
    model_dir = args.model or ensure_default_model(task)
    if export_problem(model_dir, "int8"):
        print(f"exporting {model_dir} to ONNX (fp32 + int8) first", flush=True)
        export_onnx(task, ExportOnnxConfig(model=model_dir, quantize=True))
    manifest = read_manifest(model_dir) or {}
    results = []
    for name in PATHS:
        print(f"running {name} ...", flush=True)
        results.append(run_path(name, args, model_dir))
    base = results[0]
    cores = os.cpu_count() or 1
    rows = [
        [
            r["path"] + (" (predict's default)" if r["path"] == f"onnx-{manifest.get('default')}" else ""),
            f"{r['rate']:.0f}",
            f"{r['rate'] / base['rate']:.2f}x",
            f"{r['cpu_ms']:.1f}",
            f"{1000 * cores / r['cpu_ms']:.0f}",
            f"{r['peak_rss_mb']:.0f}",
            f"{r['load_seconds']:.1f}",
            f"{r['micro_f1']:.4f}",
            f"{r['micro_f1'] - base['micro_f1']:+.4f}",
            f"{r['macro_f1']:.4f}",
            manifest.get("dev_scores", {}).get(r["path"].removeprefix("onnx-"), {}).get("micro_f1", "-"),
        ]
        for r in results
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU"
    command = f"python benchmarks/fast_path.py --n {args.n} --repeat {args.repeat}"
    best = max(results[1:], key=lambda r: r["rate"])
    idle = 1000 * cores / best["cpu_ms"]
    verdict = (
        f"Goal of {GOAL} sentences/s met by {best['path']}"
        if best["rate"] >= GOAL
        else f"Goal of {GOAL} sentences/s not met: best {best['path']} at {best['rate']:.0f} "
        f"(about {idle:.0f} with the cores idle)"
    )
    body = "\n".join(
        [
            f"`{command}` on {machine}, {now_iso()}; model `{task.relative(model_dir)}`.",
            "",
            format_table(
                [
                    "path",
                    "sentences/s",
                    "vs torch",
                    "CPU ms/sentence",
                    f"sentences/s at {cores} idle cores",
                    "peak RSS MB",
                    "load s",
                    "test micro F1",
                    "vs torch",
                    "test macro F1",
                    "dev micro F1",
                ],
                rows,
            ),
            "",
            f"{base['sentences']} public-corpus sentences, after a warm-up batch of {WARMUP}, best of {args.repeat} "
            "runs; each path in its own process (peak RSS: the whole process, weights and runtime included). "
            "CPU ms/sentence: the process's CPU time over a run; the idle-cores column divides the cores by it "
            "(an estimate for a busy machine: it assumes perfect scaling, and thread pools spinning while they "
            "wait for a core inflate CPU time). F1 on gold test with the "
            "model's thresholds. ONNX paths: tokenizers + onnxruntime only "
            f"(torch imported: {', '.join(str(r['torch_imported']) for r in results[1:])}), sentences sorted by "
            "length, batches of 64; int8: dynamic quantisation, per-channel weight scales, `clinsynth predict`'s "
            f"default only if it loses <= {MAX_INT8_DEV_LOSS} micro and macro F1 on gold dev. {verdict}.",
            *(["", args.note] if args.note else []),
        ]
    )
    out = args.out or task.reports_dir / "benchmarks.md"
    write_section(out, HEADING, body)
    print(HEADING + "\n\n" + body)
    return 0


if __name__ == "__main__":
    sys.exit(main())

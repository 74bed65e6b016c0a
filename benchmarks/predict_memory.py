"""Peak memory of ``clinsynth predict`` on a large input: it must stay bounded whatever the size.

Writes a TXT input of ``--mb`` megabytes (clinical-looking sentences, one a line), runs
``clinsynth predict`` on it in a child process, samples the child's resident memory
(/proc/PID/status, VmRSS) every 0.2 s until ``--rows`` rows are scored (or the run ends),
then stops it and prints the peak, the time to the first scored row, and the target.
The whole input is validated and counted before the first row, so the peak covers reading
all of it. Run from the project root, after ``make setup`` (a default model is trained first
if the task has none):

    .venv/bin/python benchmarks/predict_memory.py --mb 200 --rows 5000

Target: peak RSS < 1 GB for any input size (issue 26 row 9: 2.0 GB before the first batch on 200 MB).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MB = 1024
LINES = [
    "Patient is a {i}-year-old man seen for follow-up of memory complaints.",
    "Daughter reports he has been getting lost while driving, episode {i}.",
    "MoCA {i} of 30 today; donepezil continued.",
    "Abdomen soft, nontender, no organomegaly noted on visit {i}.",
]


def write_input(path: Path, megabytes: int) -> int:
    target, size, n = megabytes * 1_000_000, 0, 0
    with path.open("w", encoding="utf-8") as fh:
        while size < target:
            line = LINES[n % len(LINES)].format(i=n % 90) + "\n"
            fh.write(line)
            size += len(line)
            n += 1
    return n


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="input size in MB")
    parser.add_argument("--rows", type=int, default=5000, help="stop once this many rows are scored")
    parser.add_argument("--model", default=None, help="model folder (default: the task's default model)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clinsynth-bench-") as tmp:
        src, out = Path(tmp) / "big.txt", Path(tmp) / "pred.jsonl"
        lines = write_input(src, args.mb)
        command = [sys.executable, "-m", "clinsynth", "predict", "--input", str(src), "--out", str(out)]
        if args.model:
            command += ["--model", args.model]
        started = time.monotonic()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        part = out.with_name(out.name + ".part")
        peak, first_row, rows = 0.0, None, 0
        while child.poll() is None:
            peak = max(peak, rss_mb(child.pid))
            rows = sum(1 for _ in part.open()) if part.exists() else 0
            if rows and first_row is None:
                first_row = time.monotonic() - started
            if rows >= args.rows:
                break
            time.sleep(0.2)
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        first = f"{first_row:.1f} s" if first_row is not None else "-"
        print(f"input: {args.mb} MB, {lines:,} lines; scored rows seen: {rows:,}; first row after {first}")
        print(f"peak RSS of the predict process: {peak:.0f} MB (target < {TARGET_MB} MB): "
              f"{'OK' if peak < TARGET_MB else 'OVER'}")  # fmt: skip
        return 0 if peak < TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main())
